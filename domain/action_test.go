package domain_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/fraiseql/fraiseql-observer/domain"
)

func TestSplitFunctionName(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in   string
		want []string // nil: refused
	}{
		{"notify", []string{"notify"}},
		{"app.notify_shipping", []string{"app", "notify_shipping"}},
		{"_f$1", []string{"_f$1"}},
		{"fn; drop table x", nil},
		{"a.b.c", nil},
		{"1fn", nil},
		{"", nil},
		{"app.", nil},
		{`"quoted"`, nil},
		{strings.Repeat("a", 64), nil},
	}
	for _, c := range cases {
		got, err := domain.SplitFunctionName(c.in)
		if c.want == nil {
			if err == nil {
				t.Errorf("SplitFunctionName(%q) = %v, want an error", c.in, got)
			}
			continue
		}
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("SplitFunctionName(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
}

func TestIsHTTPToken(t *testing.T) {
	t.Parallel()
	for s, want := range map[string]bool{
		"POST": true, "purge": true, "X-Api-Key": true, "!#$%&'*+-.^_`|~09az": true,
		"": false, "GET /": false, "PÜT": false, "X:Y": false, "a\tb": false, "(x)": false,
	} {
		if got := domain.IsHTTPToken(s); got != want {
			t.Errorf("IsHTTPToken(%q) = %v, want %v", s, got, want)
		}
	}
}

// Names joined by JoinNames never collide, whatever characters they hold;
// names without the separator or '%' join as they always did (the ids and
// keys of existing deployments stay).
func TestJoinNames(t *testing.T) {
	t.Parallel()
	if got := domain.JoinNames('/', "orders", "notify"); got != "orders/notify" {
		t.Errorf("plain names joined %q, want orders/notify", got)
	}
	pairs := [][2][]string{
		{{"orders/shipped", "notify"}, {"orders", "shipped/notify"}},
		{{"a%2F", "b"}, {"a/", "b"}},
		{{"a", "%2Fb"}, {"a/", "b"}},
	}
	for _, p := range pairs {
		if x, y := domain.JoinNames('/', p[0]...), domain.JoinNames('/', p[1]...); x == y {
			t.Errorf("domain.JoinNames(%q) = domain.JoinNames(%q) = %q", p[0], p[1], x)
		}
	}
	if domain.DeliveryIDSuffix("orders/shipped", "notify") == domain.DeliveryIDSuffix("orders", "shipped/notify") {
		t.Error("two observer/action pairs share a webhook-id suffix")
	}
}

func BenchmarkJoinNames(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = domain.JoinNames(':', "0b5b3c9e-7a49-4d0e-9a51-3f3f3e7b9c21", "order-shipped", "notify-warehouse")
	}
}
