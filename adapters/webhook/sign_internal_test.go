package webhook

import "testing"

// TestSignatureTestVector checks the signer against the Standard Webhooks
// test vector published with the reference libraries
// (standard-webhooks/standard-webhooks, libraries/go/webhook_test.go,
// TestWebhookSign).
func TestSignatureTestVector(t *testing.T) {
	t.Parallel()
	key, err := ParseSigningSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err != nil {
		t.Fatal(err)
	}
	const (
		id      = "msg_p5jXN8AQM9LWM0D4loKWxJek"
		ts      = "1614265330"
		payload = `{"test": 2432232314}`
		want    = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
	)
	if got := signature([][]byte{key}, id, ts, []byte(payload)); got != want {
		t.Errorf("signature = %q, want the published %q", got, want)
	}
	other, err := ParseSigningSecret("whsec_" + "YS1icmFuZC1uZXctMzItYnl0ZS1zaWduaW5nLWtleSE=")
	if err != nil {
		t.Fatal(err)
	}
	rotated := signature([][]byte{other, key}, id, ts, []byte(payload))
	if got, wantSuffix := rotated, " "+want; len(got) <= len(wantSuffix) || got[len(got)-len(wantSuffix):] != wantSuffix {
		t.Errorf("rotated signature = %q, want the vector's signature last after a space", got)
	}
}

// signature returns the webhook-signature value the executor sends for
// keys: "v1,<base64 HMAC-SHA256 of id.ts.body>" for each, separated by
// spaces.
func signature(keys [][]byte, id, ts string, body []byte) string {
	var b []byte
	for i, key := range keys {
		if i > 0 {
			b = append(b, ' ')
		}
		b = newSigner(key).appendSignature(b, id, ts, body)
	}
	return string(b)
}
