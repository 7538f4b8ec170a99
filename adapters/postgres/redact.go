package postgres

import (
	"net/url"
	"strings"
)

// redactedMask replaces every secret Redact finds.
const redactedMask = "xxxxx"

// Redact returns a connection string fit for logs, errors and API answers:
// the userinfo password and the value of every parameter whose name holds
// "password", "secret" or "token" (any case: password, sslpassword, ...)
// become "xxxxx", in the URL form (postgres://user:pw@host/db?password=...)
// and in the keyword/value form (host=... password='...'). A string that
// parses as neither is replaced whole.
func Redact(conn string) string {
	if isURL(conn) {
		return redactURL(conn)
	}
	out, _, ok := scanKeywordValue(conn)
	if !ok {
		return "(unparsable connection string)"
	}
	return out
}

func isURL(conn string) bool {
	scheme, _, ok := strings.Cut(conn, "://")
	return ok && scheme != "" && !strings.ContainsAny(scheme, " =")
}

// secretKey reports whether a parameter named key holds a secret.
func secretKey(key string) bool {
	k := strings.ToLower(key)
	return strings.Contains(k, "password") || strings.Contains(k, "secret") || strings.Contains(k, "token")
}

func redactURL(conn string) string {
	p, err := url.Parse(conn)
	if err != nil {
		return "(unparsable url)"
	}
	p.RawQuery, _ = redactQuery(p.RawQuery)
	return p.Redacted() // the userinfo password
}

// redactQuery masks the values of secret parameters in a raw query and
// returns the secrets it masked, raw and decoded.
func redactQuery(raw string) (string, []string) {
	if raw == "" {
		return raw, nil
	}
	var secrets []string
	pairs := strings.Split(raw, "&")
	for i, pair := range pairs {
		rawKey, rawValue, _ := strings.Cut(pair, "=")
		key, err := url.QueryUnescape(rawKey)
		if err != nil {
			key = rawKey
		}
		if !secretKey(key) {
			continue
		}
		pairs[i] = rawKey + "=" + redactedMask
		secrets = append(secrets, rawValue)
		if v, err := url.QueryUnescape(rawValue); err == nil {
			secrets = append(secrets, v)
		}
	}
	return strings.Join(pairs, "&"), secrets
}

// scanKeywordValue reads libpq's keyword/value form (key = value pairs
// separated by white space; a value is single-quoted with \' and \\
// escapes, or a run of non-space characters where a backslash escapes the
// next one) and returns it with secret values masked, and the secrets.
func scanKeywordValue(s string) (out string, secrets []string, ok bool) {
	var b strings.Builder
	i := 0
	isSpace := func(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v' }
	for {
		for i < len(s) && isSpace(s[i]) {
			b.WriteByte(s[i])
			i++
		}
		if i == len(s) {
			return b.String(), secrets, true
		}
		k0 := i
		for i < len(s) && s[i] != '=' && !isSpace(s[i]) {
			i++
		}
		key := s[k0:i]
		b.WriteString(key)
		for i < len(s) && isSpace(s[i]) {
			b.WriteByte(s[i])
			i++
		}
		if key == "" || i == len(s) || s[i] != '=' {
			return "", nil, false
		}
		b.WriteByte('=')
		i++
		for i < len(s) && isSpace(s[i]) {
			b.WriteByte(s[i])
			i++
		}
		v0 := i
		var value strings.Builder
		if i < len(s) && s[i] == '\'' {
			i++
			closed := false
			for i < len(s) {
				c := s[i]
				i++
				if c == '\\' && i < len(s) {
					value.WriteByte(s[i])
					i++
					continue
				}
				if c == '\'' {
					closed = true
					break
				}
				value.WriteByte(c)
			}
			if !closed {
				return "", nil, false
			}
		} else {
			for i < len(s) && !isSpace(s[i]) {
				if s[i] == '\\' && i+1 < len(s) {
					i++
				}
				value.WriteByte(s[i])
				i++
			}
		}
		if secretKey(key) {
			b.WriteString(redactedMask)
			secrets = append(secrets, s[v0:i], value.String())
		} else {
			b.WriteString(s[v0:i])
		}
	}
}

// secretsOf returns the secrets a connection string holds, as written and
// decoded, so they can be scrubbed from texts that quote it.
func secretsOf(conn string) []string {
	if isURL(conn) {
		var secrets []string
		if p, err := url.Parse(conn); err == nil {
			if pw, ok := p.User.Password(); ok {
				secrets = append(secrets, pw, url.UserPassword("", pw).String()[1:])
			}
			_, q := redactQuery(p.RawQuery)
			return append(secrets, q...)
		}
		// Unparsable: take what sits between the scheme's "user:" and the
		// last "@" before the path, and every query value, as written.
		rest := conn[strings.Index(conn, "://")+3:]
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			if _, pw, ok := strings.Cut(rest[:at], ":"); ok {
				secrets = append(secrets, pw)
			}
		}
		if _, query, ok := strings.Cut(rest, "?"); ok {
			_, q := redactQuery(query)
			secrets = append(secrets, q...)
		}
		return secrets
	}
	_, secrets, _ := scanKeywordValue(conn)
	return secrets
}

// scrub replaces in text every secret of the connection string conn.
func scrub(text, conn string) string {
	for _, s := range secretsOf(conn) {
		if s != "" && s != redactedMask {
			text = strings.ReplaceAll(text, s, redactedMask)
		}
	}
	return text
}

// redactedError keeps a driver error for errors.Is/As while printing its
// text with the connection string's secrets scrubbed.
type redactedError struct {
	err  error
	conn string
}

func (e *redactedError) Error() string { return scrub(e.err.Error(), e.conn) }
func (e *redactedError) Unwrap() error { return e.err }
