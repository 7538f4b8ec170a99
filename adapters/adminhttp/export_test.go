package adminhttp

import "net/http"

// HTTPClientOf and LongHTTPClientOf expose c's HTTP clients to the tests.
func HTTPClientOf(c *Client) *http.Client     { return c.http }
func LongHTTPClientOf(c *Client) *http.Client { return c.long }
