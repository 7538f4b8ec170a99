package webhook_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/adapters/webhook"
	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

func batched(wh *domain.WebhookAction) {
	wh.Batch = &domain.Batching{MaxEvents: 100, MaxBytes: 1 << 20, MaxWait: 10 * time.Millisecond}
}

// batchOf builds the batch of evs for act, with the adapter's entries.
func batchOf(t *testing.T, exec *webhook.Executor, act *domain.Action, evs ...*domain.Event) ports.ActionBatch {
	t.Helper()
	b := ports.ActionBatch{Observer: testObserver, Action: act}
	var ids []string
	for _, ev := range evs {
		body, err := exec.BatchBody(t.Context(), ev, testObserver, act)
		if err != nil {
			t.Fatalf("BatchBody: %v", err)
		}
		b.Events = append(b.Events, ports.BatchEvent{Event: ev, Body: body})
		ids = append(ids, ev.ID)
	}
	b.ID = domain.BatchID(testObserver.Name, act.Name, ids)
	return b
}

type batchDoc struct {
	Type    string            `json:"type"`
	BatchID string            `json:"batch_id"`
	Count   int               `json:"count"`
	Events  []json.RawMessage `json:"events"`
}

func TestExecuteBatchSendsOneSignedDocument(t *testing.T) {
	t.Parallel()
	b := setup(t, webhook.Config{Now: time.Now}) // the reference checks the timestamp against its own clock
	oldSecret := "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	newSecret := secretOf([]byte("a-brand-new-32-byte-signing-key!"))
	act := newAction(b.srv.URL, func(wh *domain.WebhookAction) {
		batched(wh)
		wh.SigningSecrets = []string{newSecret, oldSecret}
		wh.Headers = map[string]string{"X-Team": "logistics"}
	})
	first, second := newEvent(), newEvent()
	second.ID, second.EntityID = "second-event", "another-order"
	batch := batchOf(t, b.exec, act, first, second)
	if err := b.exec.ExecuteBatch(t.Context(), batch); err != nil {
		t.Fatalf("ExecuteBatch: %v", err)
	}
	req := b.next(t)
	var doc batchDoc
	if err := json.Unmarshal(req.Body, &doc); err != nil {
		t.Fatalf("body %s: %v", req.Body, err)
	}
	if doc.Type != "batch" || doc.BatchID != batch.ID || doc.Count != 2 || len(doc.Events) != 2 {
		t.Fatalf("document = %+v", doc)
	}
	for i, ev := range []*domain.Event{first, second} {
		want, err := ev.Envelope()
		if err != nil {
			t.Fatal(err)
		}
		if string(doc.Events[i]) != string(want) {
			t.Errorf("entry %d = %s, want the unbatched body %s", i, doc.Events[i], want)
		}
	}
	if got := req.Header.Get("webhook-id"); got != batch.ID {
		t.Errorf("webhook-id = %q, want the batch id %q", got, batch.ID)
	}
	if req.Header.Get("X-Team") != "logistics" || req.Method != http.MethodPost {
		t.Errorf("method %s, headers %v", req.Method, req.Header)
	}
	if n := len(strings.Fields(req.Header.Get("webhook-signature"))); n != 2 {
		t.Fatalf("webhook-signature has %d signatures, want one per secret", n)
	}
	for _, secret := range []string{newSecret, oldSecret} {
		wh, err := standardwebhooks.NewWebhook(secret)
		if err != nil {
			t.Fatal(err)
		}
		if err := wh.Verify(req.Body, req.Header); err != nil {
			t.Errorf("reference Verify of the batch: %v", err)
		}
	}
	// The same events sent again: the same webhook-id.
	if err := b.exec.ExecuteBatch(t.Context(), batchOf(t, b.exec, act, first, second)); err != nil {
		t.Fatal(err)
	}
	if got := b.next(t).Header.Get("webhook-id"); got != batch.ID {
		t.Errorf("resent batch webhook-id = %q, want %q", got, batch.ID)
	}
}

func TestExecuteBatchClassifiesTheAnswer(t *testing.T) {
	t.Parallel()
	b := setup(t, webhook.Config{})
	for _, tt := range []struct {
		status    string
		transient bool
	}{{"503", true}, {"400", false}} {
		act := newAction(b.srv.URL, func(wh *domain.WebhookAction) {
			batched(wh)
			wh.Headers = map[string]string{"X-Test-Status": tt.status, "X-Test-Retry-After": "7"}
		})
		err := b.exec.ExecuteBatch(t.Context(), batchOf(t, b.exec, act, newEvent()))
		b.next(t)
		if err == nil || domain.IsPermanent(err) == tt.transient {
			t.Errorf("status %s: %v", tt.status, err)
		}
		if tt.transient && domain.RetryAfter(err) != 7*time.Second {
			t.Errorf("status %s: retry-after %v, want 7s", tt.status, domain.RetryAfter(err))
		}
	}
}

func TestExecuteOfABatchedActionSendsABatchOfOne(t *testing.T) {
	t.Parallel()
	b := setup(t, webhook.Config{})
	act := newAction(b.srv.URL, func(wh *domain.WebhookAction) {
		batched(wh)
		wh.BodyTemplate = domain.MustCompileTemplate(`order {{ event.entity_id }} is {{ status }}`) // not JSON
	})
	ev := newEvent()
	if err := b.exec.Execute(t.Context(), ev, testObserver, act); err != nil {
		t.Fatal(err)
	}
	req := b.next(t)
	var doc batchDoc
	if err := json.Unmarshal(req.Body, &doc); err != nil {
		t.Fatalf("body %s: %v", req.Body, err)
	}
	id := domain.BatchID(testObserver.Name, act.Name, []string{ev.ID})
	if doc.BatchID != id || req.Header.Get("webhook-id") != id || doc.Count != 1 || len(doc.Events) != 1 {
		t.Fatalf("document %+v, webhook-id %q", doc, req.Header.Get("webhook-id"))
	}
	var entry string
	if err := json.Unmarshal(doc.Events[0], &entry); err != nil || entry != "order "+ev.EntityID+" is shipped" {
		t.Errorf("entry %s (%v): a body that is not JSON is entered as a JSON string", doc.Events[0], err)
	}
}

func TestPreviewShowsTheBatchShape(t *testing.T) {
	t.Parallel()
	ev := &domain.Event{ID: "e1", EventType: domain.EventUpdate, EntityType: "Order", EntityID: "o-42", Data: map[string]any{}}
	obs := &domain.Observer{Name: "shipped"}
	act := newAction("https://hooks.example.com/orders", batched)
	act.Name = "hook"
	p := webhook.Preview(ev, obs, act)
	req := p.Details.(webhook.RequestPreview)
	id := domain.BatchID("shipped", "hook", []string{"e1"})
	if req.Batch == nil || req.Batch.MaxEvents != 100 || req.Batch.MaxWait != "10ms" || req.Headers["webhook-id"] != id ||
		!strings.HasPrefix(req.Body, `{"type":"batch","batch_id":"`+id+`","count":1,"events":[{`) {
		t.Fatalf("preview = %+v", req)
	}
	if !strings.Contains(strings.Join(p.Lines, "\n"), "batched: up to 100 events") {
		t.Errorf("lines = %q", p.Lines)
	}
}
