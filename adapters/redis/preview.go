package redis

import (
	"strings"

	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// InvalidationPreview is what a cache action would invalidate.
type InvalidationPreview struct {
	// Pattern is the rendered key pattern, event values glob-escaped, with
	// the key prefix in front.
	Pattern string `json:"pattern"`
	// Mode is "UNLINK <key>" for a single key or "SCAN MATCH + UNLINK" for
	// a pattern with wildcards.
	Mode string `json:"mode"`
}

// Previewer describes cache actions for the dry run: the keys the
// Invalidator would remove (the action's own key_prefix in front; the
// observer's redis.key_prefix is not used for application keys). It
// connects to nothing.
var Previewer ports.ActionPreviewer = ports.ActionPreviewerFunc(func(ev *domain.Event, _ *domain.Observer, act *domain.Action) ports.ActionPreview {
	if act.Cache == nil || act.Cache.KeyPattern.IsZero() {
		return ports.ActionPreview{Problem: "the cache action has no key_pattern"}
	}
	var p ports.ActionPreview
	rendered, missing := act.Cache.KeyPattern.Render(ev, domain.EscapeGlob)
	p.Missing = missing
	pattern := domain.GlobEscape(act.Cache.KeyPrefix) + rendered
	inv := InvalidationPreview{Pattern: pattern, Mode: "UNLINK " + domain.GlobUnescape(pattern)}
	if domain.HasGlob(pattern) {
		inv.Mode = "SCAN MATCH + UNLINK"
	}
	switch {
	case len(missing) > 0:
		p.Problem = "the event has no value for " + strings.Join(missing, ", ") + ": the invalidation fails permanently rather than widen the pattern"
	case rendered == "":
		p.Problem = "the pattern renders empty: the invalidation fails permanently"
	case domain.HasGlob(rendered) && len(emptyPlaceholders(act.Cache.KeyPattern, ev)) > 0:
		p.Problem = strings.Join(emptyPlaceholders(act.Cache.KeyPattern, ev), ", ") + " empty: the invalidation fails permanently rather than widen the pattern"
	}
	p.Details = inv
	p.Lines = []string{"invalidate " + inv.Pattern + " (" + inv.Mode + ")"}
	return p
})
