package email

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"unicode"

	gomail "github.com/wneessen/go-mail"

	"github.com/fraiseql/fraiseql-observer/domain"
)

// EventIDHeader carries the event's id, the same on every retry, so a
// receiver can drop a repeated delivery.
const EventIDHeader = "X-FraiseQL-Event-ID"

// maxQuoted bounds how much of a bad address an error quotes.
const maxQuoted = 100

// rendered is an email action filled in for one event, addresses checked.
type rendered struct {
	To, Cc, Bcc []*mail.Address
	ReplyTo     *mail.Address
	Subject     string
	Text, HTML  string // either may be empty, not both
}

// render fills act's templates from ev: subject and text body as the
// values are, the HTML body with values HTML-escaped, addresses parsed
// with net/mail. A bad address is an error naming its field; placeholders
// without a value render empty and are listed in missing.
func render(ev *domain.Event, act *domain.EmailAction) (r rendered, missing []string, err error) {
	collect := func(t *domain.Template, esc domain.Escaping) string {
		out, m := t.Render(ev, esc)
		missing = append(missing, m...)
		return out
	}
	if act.SubjectTemplate != nil {
		r.Subject = collect(act.SubjectTemplate, domain.EscapeNone)
	} else {
		r.Subject = act.Subject
	}
	r.Subject = headerText(r.Subject)
	r.Text = collect(act.BodyTemplate, domain.EscapeNone)
	r.HTML = collect(act.HTMLBodyTemplate, domain.EscapeHTML)
	var toRendered string
	if act.ToTemplate != nil {
		toRendered = collect(act.ToTemplate, domain.EscapeAddress)
	}

	if r.To, err = parseEach("to", act.To); err != nil {
		return r, missing, err
	}
	if act.ToTemplate != nil {
		list, err := parseRendered("to_template", toRendered)
		if err != nil {
			return r, missing, err
		}
		r.To = append(r.To, list...)
	}
	if r.Cc, err = parseEach("cc", act.Cc); err != nil {
		return r, missing, err
	}
	if r.Bcc, err = parseEach("bcc", act.Bcc); err != nil {
		return r, missing, err
	}
	if act.ReplyTo != "" {
		if r.ReplyTo, err = parseOne("reply_to", act.ReplyTo); err != nil {
			return r, missing, err
		}
	}
	if len(r.To) == 0 {
		return r, missing, errors.New("to: no recipient")
	}
	if n := len(r.To) + len(r.Cc) + len(r.Bcc); n > MaxRecipients {
		return r, missing, fmt.Errorf("to, cc, bcc: %d recipients, at most %d per message", n, MaxRecipients)
	}
	if r.Text == "" && r.HTML == "" {
		return r, missing, errors.New("body_template and html_body_template both rendered empty")
	}
	return r, missing, nil
}

// CheckAction checks the fixed addresses of act (to, cc, bcc, reply_to)
// with the rules Execute applies, so config load can refuse a bad one;
// the error names the field (e.g. "cc[1]").
func CheckAction(act *domain.EmailAction) error {
	if act == nil {
		return errors.New("no email config")
	}
	for _, list := range []struct {
		field string
		addrs []string
	}{{"to", act.To}, {"cc", act.Cc}, {"bcc", act.Bcc}} {
		if _, err := parseEach(list.field, list.addrs); err != nil {
			return err
		}
	}
	if act.ReplyTo != "" {
		if _, err := parseOne("reply_to", act.ReplyTo); err != nil {
			return err
		}
	}
	return nil
}

// parseEach parses one address per entry of field.
func parseEach(field string, entries []string) ([]*mail.Address, error) {
	out := make([]*mail.Address, 0, len(entries))
	for i, s := range entries {
		a, err := parseOne(fmt.Sprintf("%s[%d]", field, i), s)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

func parseOne(field, s string) (*mail.Address, error) {
	a, err := mail.ParseAddress(s)
	if err != nil {
		return nil, fmt.Errorf("%s: %q is not an email address: %w", field, quote(s), err)
	}
	return a, nil
}

// parseRendered parses what a recipient template rendered: an RFC 5322
// address list ("a@x, B <b@y>"), or a JSON array of addresses, which is
// what a placeholder naming an array of strings renders.
func parseRendered(field, s string) ([]*mail.Address, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, fmt.Errorf("%s: rendered no address", field)
	}
	if strings.HasPrefix(s, "[") {
		var list []string
		if err := json.Unmarshal([]byte(s), &list); err != nil {
			return nil, fmt.Errorf("%s: %q is neither an address list nor a JSON array of addresses", field, quote(s))
		}
		if len(list) == 0 {
			return nil, fmt.Errorf("%s: rendered an empty list", field)
		}
		return parseEach(field, list)
	}
	list, err := mail.ParseAddressList(s)
	if err != nil {
		return nil, fmt.Errorf("%s: %q is not a list of email addresses: %w", field, quote(s), err)
	}
	return list, nil
}

func quote(s string) string {
	if len(s) <= maxQuoted {
		return s
	}
	return strings.ToValidUTF8(s[:maxQuoted], "") + "..."
}

// headerText makes rendered text one header line: control characters
// (CR and LF included, so no header can be injected) become spaces.
func headerText(s string) string {
	return strings.TrimSpace(strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s))
}

// message builds the MIME message: From, To, Cc, Reply-To (Bcc only in the
// envelope), encoded Subject, Date from the clock, a Message-ID stable for
// the event and action (so a retried delivery can be recognised), the
// event id header, Auto-Submitted, and the text and/or HTML part
// (multipart/alternative when both), UTF-8, quoted-printable.
func (e *Executor) message(r rendered, ev *domain.Event, obs *domain.Observer, act *domain.Action) *gomail.Msg {
	m := gomail.NewMsg()
	m.FromMailAddress(e.from)
	m.SetAddrHeaderFromMailAddress(gomail.HeaderTo, r.To...)
	if len(r.Cc) > 0 {
		m.SetAddrHeaderFromMailAddress(gomail.HeaderCc, r.Cc...)
	}
	if len(r.Bcc) > 0 {
		m.SetAddrHeaderFromMailAddress(gomail.HeaderBcc, r.Bcc...)
	}
	if r.ReplyTo != nil {
		m.ReplyToMailAddress(r.ReplyTo)
	}
	m.Subject(r.Subject)
	m.SetDateWithValue(e.now())
	m.SetMessageIDWithValue(messageID(ev.ID, domain.ObserverName(obs), act.Name, e.fromDomain))
	m.SetGenHeader(EventIDHeader, headerText(ev.ID))
	m.SetGenHeader("Auto-Submitted", "auto-generated") // RFC 3834: no auto-replies
	m.SetUserAgent("fraiseql-observer")
	switch {
	case r.Text != "" && r.HTML != "":
		m.SetBodyString(gomail.TypeTextPlain, r.Text)
		m.AddAlternativeString(gomail.TypeTextHTML, r.HTML)
	case r.HTML != "":
		m.SetBodyString(gomail.TypeTextHTML, r.HTML)
	default:
		m.SetBodyString(gomail.TypeTextPlain, r.Text)
	}
	return m
}

// messageID is the Message-ID (without angle brackets) of an action's
// message for an event: the same on every retry, distinct between actions.
func messageID(eventID, observer, action, domainPart string) string {
	sum := sha256.Sum256([]byte(observer + "/" + action))
	tag := hex.EncodeToString(sum[:])[:12]
	if isDotAtom(eventID) && len(eventID) <= 64 {
		return eventID + "." + tag + "@" + domainPart
	}
	idSum := sha256.Sum256([]byte(eventID))
	return hex.EncodeToString(idSum[:16]) + "." + tag + "@" + domainPart
}

// messageIDDomain is the right side of Message-IDs: the sender's domain
// when it is plain ASCII, else a reserved name.
func messageIDDomain(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 && isDotAtom(addr[i+1:]) {
		return addr[i+1:]
	}
	return "fraiseql-observer.invalid"
}

// isDotAtom reports whether s is letters, digits, '-', '_' and inner dots.
func isDotAtom(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for _, c := range []byte(s) {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.':
		default:
			return false
		}
	}
	return true
}
