package email

import (
	"net/mail"
	"strings"

	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// MessagePreview is the message an email action would send. Addresses are
// shown as written ("Name <address>"), not MIME-encoded; Bcc recipients
// are listed although the message itself never shows them.
type MessagePreview struct {
	From    string   `json:"from"`
	To      []string `json:"to"`
	Cc      []string `json:"cc,omitempty"`
	Bcc     []string `json:"bcc,omitempty"`
	ReplyTo string   `json:"reply_to,omitempty"`
	Subject string   `json:"subject"`
	Text    string   `json:"text,omitempty"` // the text/plain part
	HTML    string   `json:"html,omitempty"` // the text/html part, values HTML-escaped
}

// NewPreviewer describes email actions for the dry run as an executor
// sending from from (email.from) renders them: recipients, subject and
// both bodies. A rendered address that is not one is the preview's
// Problem, naming its field, as it would be a permanent failure.
func NewPreviewer(from string) ports.ActionPreviewer {
	return ports.ActionPreviewerFunc(func(ev *domain.Event, _ *domain.Observer, act *domain.Action) ports.ActionPreview {
		return preview(from, ev, act)
	})
}

func preview(from string, ev *domain.Event, act *domain.Action) ports.ActionPreview {
	if act.Email == nil {
		return ports.ActionPreview{Problem: "the email action has no configuration"}
	}
	var p ports.ActionPreview
	r, missing, err := render(ev, act.Email)
	p.Missing = missing
	if err != nil {
		p.Problem = err.Error()
	}
	m := MessagePreview{
		From: from, To: showAll(r.To), Cc: showAll(r.Cc), Bcc: showAll(r.Bcc),
		Subject: r.Subject, Text: r.Text, HTML: r.HTML,
	}
	if a, err := mail.ParseAddress(from); err == nil {
		m.From = show(a)
	}
	if r.ReplyTo != nil {
		m.ReplyTo = show(r.ReplyTo)
	}
	p.Details = m
	p.Lines = append(p.Lines, "from: "+m.From, "to: "+strings.Join(m.To, ", "))
	if len(m.Cc) > 0 {
		p.Lines = append(p.Lines, "cc: "+strings.Join(m.Cc, ", "))
	}
	if len(m.Bcc) > 0 {
		p.Lines = append(p.Lines, "bcc: "+strings.Join(m.Bcc, ", "))
	}
	if m.ReplyTo != "" {
		p.Lines = append(p.Lines, "reply-to: "+m.ReplyTo)
	}
	p.Lines = append(p.Lines, "subject: "+m.Subject)
	p.Lines = appendBody(p.Lines, "text", m.Text)
	p.Lines = appendBody(p.Lines, "html", m.HTML)
	return p
}

// appendBody adds a body under its label, one line of text per line.
func appendBody(lines []string, label, body string) []string {
	if body == "" {
		return lines
	}
	lines = append(lines, label+":")
	for _, l := range strings.Split(strings.TrimRight(body, "\r\n"), "\n") {
		lines = append(lines, "  "+strings.TrimRight(l, "\r"))
	}
	return lines
}

func showAll(list []*mail.Address) []string {
	if len(list) == 0 {
		return nil
	}
	out := make([]string, len(list))
	for i, a := range list {
		out[i] = show(a)
	}
	return out
}

// show writes a as a person reads it: "Name <address>" or the address.
func show(a *mail.Address) string {
	if a.Name == "" {
		return a.Address
	}
	return a.Name + " <" + a.Address + ">"
}
