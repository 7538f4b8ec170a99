package redis

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/fraiseql/fraiseql-observer/internal/testenv"
)

// pipelineCounter counts the pipelines a client sends and their commands,
// apart from a new connection's set-up (HELLO, AUTH, SELECT, CLIENT).
type pipelineCounter struct{ pipelines, cmds atomic.Int64 }

func (*pipelineCounter) DialHook(next goredis.DialHook) goredis.DialHook { return next }
func (*pipelineCounter) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return next
}

func (p *pipelineCounter) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		if len(cmds) > 0 && slices.Contains([]string{"hello", "auth", "select", "client"}, cmds[0].Name()) {
			return next(ctx, cmds)
		}
		p.pipelines.Add(1)
		p.cmds.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

// countedBatcher is a batcher over its own connection to the test Redis,
// with the counter of its pipelines.
func countedBatcher(t *testing.T) (*batcher, *pipelineCounter) {
	t.Helper()
	opt, err := goredis.ParseURL(testenv.RedisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	rdb := goredis.NewClient(opt)
	count := &pipelineCounter{}
	rdb.AddHook(count)
	b := newBatcher(rdb, 5*time.Second)
	t.Cleanup(func() {
		b.close()
		_ = rdb.Close()
	})
	return b, count
}

// A lone caller (nothing queued) is sent at once, in a pipeline of its
// own; callers that come together share pipelines: fewer round trips than
// callers, every answer right.
func TestBatcherAloneAndTogether(t *testing.T) {
	t.Parallel()
	b, count := countedBatcher(t)
	ctx := t.Context()
	key := newPrefix() + "k"
	t.Cleanup(func() { _ = b.rdb.Del(context.Background(), key).Err() })

	for i := range 3 {
		cmd := goredis.NewStringCmd(ctx, "echo", "alone")
		if err := b.do(ctx, cmd); err != nil || cmd.Val() != "alone" {
			t.Fatalf("lone call %d = %q, %v; want alone", i, cmd.Val(), err)
		}
	}
	if got := count.pipelines.Load(); got != 3 {
		t.Errorf("3 lone calls sent %d pipelines, want 3", got)
	}

	const callers = 400
	count.pipelines.Store(0)
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	start := make(chan struct{})
	for range callers {
		wg.Go(func() {
			<-start
			cmd := goredis.NewIntCmd(ctx, "incr", key)
			if err := b.do(ctx, cmd); err != nil {
				errs <- err
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent call: %v", err)
	}
	if n, err := b.rdb.Get(ctx, key).Int(); err != nil || n != callers {
		t.Errorf("counter = %d, %v after %d increments", n, err, callers)
	}
	if got := count.pipelines.Load(); got >= callers {
		t.Errorf("%d concurrent callers sent %d pipelines: none shared", callers, got)
	} else {
		t.Logf("%d concurrent callers: %d pipelines", callers, got)
	}
}

// A caller's wait is bounded by its own context: a server that accepts
// and never answers costs it its deadline, not the command timeout (which
// bounds the pipeline, and so close), and the next caller is served the
// same way.
func TestBatcherCallerHonoursItsContext(t *testing.T) {
	t.Parallel()
	opt, err := goredis.ParseURL(silentRedis(t))
	if err != nil {
		t.Fatal(err)
	}
	opt.MaxRetries, opt.ContextTimeoutEnabled, opt.Protocol = -1, true, 2
	rdb := goredis.NewClient(opt)
	b := newBatcher(rdb, 2*time.Second)
	t.Cleanup(func() {
		b.close()
		_ = rdb.Close()
	})
	for range 2 {
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		begun := time.Now()
		err := b.do(ctx, goredis.NewStatusCmd(ctx, "ping"))
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("do against a silent server = %v, want the deadline", err)
		}
		if took := time.Since(begun); took >= time.Second {
			t.Errorf("do took %s, want about its 100ms deadline (the command timeout is 2s)", took)
		}
	}
}

// After close a call is refused at once.
func TestBatcherClosedRefuses(t *testing.T) {
	t.Parallel()
	b, _ := countedBatcher(t)
	b.close()
	if err := b.do(t.Context(), goredis.NewStatusCmd(t.Context(), "ping")); !errors.Is(err, goredis.ErrClosed) {
		t.Errorf("do after close = %v, want ErrClosed", err)
	}
}
