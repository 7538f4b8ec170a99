package email_test

import (
	"crypto/tls"
	"strconv"

	"github.com/fraiseql/fraiseql-observer/internal/smtptest"
)

// newTLSConfig trusts the test server's certificate.
func newTLSConfig(ts *smtptest.Server) *tls.Config {
	return &tls.Config{RootCAs: ts.CA, MinVersion: tls.VersionTLS12}
}

func itoa(n int) string { return strconv.Itoa(n) }
