package domain

import "testing"

func TestRedactActionURL(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"https://discord.com/api/webhooks/1234567/AbCdEfSECRETtoken123456?x=1":  "https://discord.com/api/webhooks/1234567/redacted?x=redacted",
		"https://hooks.example.com/orders?token=abc123":                         "https://hooks.example.com/orders?token=redacted",
		"https://user:pw@hooks.example.com/orders":                              "https://user:redacted@hooks.example.com/orders",
		"https://s3cr3ttokenvalue@hooks.example.com/":                           "https://redacted@hooks.example.com/",
		"https://hooks.example.com/a%2Fb/tok%20en1234567890":                    "https://hooks.example.com/a%2Fb/redacted",
		"http://127.0.0.1:8080/hook":                                            "http://127.0.0.1:8080/hook",
		"https://hooks.slack.com/services/T0000/B0000/XXXXXXXXXXXXXXXXXXXXXXXX": "https://hooks.slack.com/services/T0000/B0000/redacted",
		"https://hooks.example.com/h?SECRETTOKEN123456&page=2":                  "https://hooks.example.com/h?redacted&page=redacted",
		"https://hooks.example.com/h?flag&a=1&a=2":                              "https://hooks.example.com/h?flag=redacted&a=redacted&a=redacted",
		"https://hooks.example.com/h#access_token=abc123xyz":                    "https://hooks.example.com/h#redacted",
		"://bad": "(unparsable url)",
	} {
		if got := RedactActionURL(in); got != want {
			t.Errorf("RedactActionURL(%q) = %q, want %q", in, got, want)
		}
	}
}
