//go:build linux

package chaos_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"time"
)

// api is a client of the transferd API that retries what a careful client retries: a request that
// got no answer (the API died, the connection was cut, it timed out) or a 5xx, 408 or 429, sent
// again with the same body, and so the same transfer id, until it gets a definitive answer.
type api struct {
	base string
	http *http.Client
	// until bounds the retries; a request still unanswered then is given up and reported.
	until time.Time
}

// answer is a definitive answer: a status below 500 other than 408 and 429.
type answer struct {
	status   int
	replayed bool
	body     []byte
	// attempts counts the requests sent, the last one included.
	attempts int
}

// transferJSON is the API's Transfer, as much of it as the suite checks.
type transferJSON struct {
	ID            string `json:"id"`
	Kind          string `json:"kind"`
	FromAccountID string `json:"from_account_id"`
	ToAccountID   string `json:"to_account_id"`
	Amount        int64  `json:"amount"`
	Currency      string `json:"currency"`
	Status        string `json:"status"`
}

// do sends method path with body (nil for none) and headers (name, value, ...) as token until an answer is definitive or until
// passes; err is set only then.
func (a *api) do(ctx context.Context, method, path, token string, body any, headers ...string) (answer, error) {
	var raw []byte
	if body != nil {
		var err error
		if raw, err = json.Marshal(body); err != nil {
			return answer{}, err
		}
	}
	var last string
	for attempt := 1; ; attempt++ {
		if time.Now().After(a.until) || ctx.Err() != nil {
			return answer{attempts: attempt - 1}, fmt.Errorf("%s %s: no definitive answer after %d attempts; last: %s", method, path, attempt-1, last)
		}
		req, err := http.NewRequestWithContext(ctx, method, a.base+path, bytes.NewReader(raw))
		if err != nil {
			return answer{}, err
		}
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		for i := 0; i+1 < len(headers); i += 2 {
			req.Header.Set(headers[i], headers[i+1])
		}
		resp, err := a.http.Do(req)
		if err == nil {
			b, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			switch {
			case rerr != nil:
				last = "read: " + rerr.Error()
			case resp.StatusCode >= 500 || resp.StatusCode == http.StatusRequestTimeout || resp.StatusCode == http.StatusTooManyRequests:
				last = fmt.Sprintf("%d %s", resp.StatusCode, b)
			default:
				return answer{status: resp.StatusCode, replayed: resp.Header.Get("Idempotent-Replayed") == "true", body: b, attempts: attempt}, nil
			}
		} else {
			last = err.Error()
		}
		// Back off a little, with jitter, so that a restarting API is not stampeded.
		time.Sleep(time.Duration(50+rand.IntN(150)*min(attempt, 5)) * time.Millisecond)
	}
}

// must sends a request that has to answer want, for the setup.
func (a *api) must(ctx context.Context, want int, method, path, token string, body, out any) error {
	ans, err := a.do(ctx, method, path, token, body)
	if err != nil {
		return err
	}
	if ans.status != want {
		return fmt.Errorf("%s %s: %d %s, want %d", method, path, ans.status, ans.body, want)
	}
	if out != nil {
		return json.Unmarshal(ans.body, out)
	}
	return nil
}
