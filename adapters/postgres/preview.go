package postgres

import (
	"encoding/json"

	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// CallPreview is the call a database action would make.
type CallPreview struct {
	Function string `json:"function"`
	Argument string `json:"argument"`
}

// FunctionPreviewer describes database actions for the dry run, without
// a database.
var FunctionPreviewer ports.ActionPreviewer = ports.ActionPreviewerFunc(PreviewCall)

// PreviewCall renders the call act would make for ev, without making it.
func PreviewCall(ev *domain.Event, _ *domain.Observer, act *domain.Action) ports.ActionPreview {
	if act.Database == nil {
		return ports.ActionPreview{Problem: "the database action has no configuration"}
	}
	var p ports.ActionPreview
	arg, err := json.Marshal(struct {
		Event  domain.Event   `json:"event"`
		Params map[string]any `json:"params"`
	}{*ev, act.Database.Params})
	if err != nil {
		p.Problem = "the argument cannot be encoded: " + err.Error()
	}
	fn, err := ParseFunctionName(act.Database.FunctionName)
	if err != nil {
		p.Problem = err.Error()
		fn = act.Database.FunctionName
	}
	call := CallPreview{Function: fn, Argument: string(arg)} // the name as sent
	p.Details = call
	p.Lines = []string{"SELECT " + call.Function + "($1::jsonb) with $1 = " + call.Argument}
	return p
}
