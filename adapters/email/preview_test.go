package email_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/fraiseql/fraiseql-observer/adapters/email"
	"github.com/fraiseql/fraiseql-observer/domain"
)

// The dry run shows what Execute would send: every recipient, the
// rendered subject and both bodies (the HTML one escaped), and a bad
// rendered address as the problem naming its field.
func TestPreview(t *testing.T) {
	t.Parallel()
	previewer := email.NewPreviewer("Boutique Été <orders@example.com>")
	act := newAction(func(e *domain.EmailAction) {
		e.ToTemplate = domain.MustCompileTemplate("{{ watchers }}")
		e.Cc = []string{"Sales <sales@example.com>"}
		e.Bcc = []string{"audit@example.com"}
		e.ReplyTo = "support@example.com"
		e.Subject, e.SubjectTemplate = "", domain.MustCompileTemplate("Commande {{ status }} pour {{ customer.name }} {{ gift }}")
		e.BodyTemplate = domain.MustCompileTemplate("Hello {{ customer.name }},\nnote: {{ note }}")
		e.HTMLBodyTemplate = domain.MustCompileTemplate("<p>{{ note }}</p>")
	})
	p := previewer.Preview(newEvent(), testObserver, act)
	m, ok := p.Details.(email.MessagePreview)
	if !ok {
		t.Fatalf("details = %T, want MessagePreview", p.Details)
	}
	want := email.MessagePreview{
		From:    "Boutique Été <orders@example.com>",
		To:      []string{"Ops <ops@example.com>", "w1@example.com", "Watcher Two <w2@example.com>"},
		Cc:      []string{"Sales <sales@example.com>"},
		Bcc:     []string{"audit@example.com"},
		ReplyTo: "support@example.com",
		Subject: "Commande shipped pour Zoë Ünïcode",
		Text:    "Hello Zoë Ünïcode,\nnote: <b>fragile</b> & \"urgent\"",
		HTML:    "<p>&lt;b&gt;fragile&lt;/b&gt; &amp; &#34;urgent&#34;</p>",
	}
	if m.From != want.From || !slices.Equal(m.To, want.To) || !slices.Equal(m.Cc, want.Cc) || !slices.Equal(m.Bcc, want.Bcc) ||
		m.ReplyTo != want.ReplyTo || m.Subject != want.Subject || m.Text != want.Text || m.HTML != want.HTML {
		t.Errorf("preview =\n%+v\nwant\n%+v", m, want)
	}
	if p.Problem != "" || !slices.Equal(p.Missing, []string{"gift"}) {
		t.Errorf("problem %q, missing %v; want none and [gift]", p.Problem, p.Missing)
	}
	text := strings.Join(p.Lines, "\n")
	for _, line := range []string{
		"from: Boutique Été <orders@example.com>",
		"to: Ops <ops@example.com>, w1@example.com, Watcher Two <w2@example.com>",
		"cc: Sales <sales@example.com>", "bcc: audit@example.com", "reply-to: support@example.com",
		"subject: Commande shipped pour Zoë Ünïcode",
		"text:\n  Hello Zoë Ünïcode,\n  note: <b>fragile</b> & \"urgent\"",
		"html:\n  <p>&lt;b&gt;fragile&lt;/b&gt;",
	} {
		if !strings.Contains(text, line) {
			t.Errorf("lines lack %q:\n%s", line, text)
		}
	}

	bad := newAction(func(e *domain.EmailAction) { e.ToTemplate = domain.MustCompileTemplate("{{ bad }}") })
	p = previewer.Preview(newEvent(), testObserver, bad)
	if !strings.Contains(p.Problem, "to_template") || !strings.Contains(p.Problem, "not-an-address") {
		t.Errorf("problem = %q, want the bad rendered address and its field", p.Problem)
	}
	if m := p.Details.(email.MessagePreview); m.Subject != "Order update" || !strings.Contains(m.Text, "is shipped") {
		t.Errorf("a bad address hides the rest of the preview: %+v", m)
	}
	if p := previewer.Preview(newEvent(), testObserver, &domain.Action{Type: domain.ActionEmail}); p.Problem == "" || p.Details != nil {
		t.Errorf("preview without config = %+v", p)
	}
}
