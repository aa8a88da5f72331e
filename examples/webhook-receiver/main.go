// Command webhook-receiver is a receiver of transferd's webhooks, as a client would write one: it
// verifies each delivery with the Standard Webhooks Go library (not with transferd's code), answers
// 204 to the verified ones and 400 to the others, and prints each verified event once, however
// often it is delivered (webhook-id is the event's id, the same on every attempt).
//
//	WEBHOOK_SECRET=whsec_... go run ./examples/webhook-receiver -addr 127.0.0.1:9000
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"sync"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9000", "address to listen on")
	flag.Parse()
	wh, err := standardwebhooks.NewWebhook(os.Getenv("WEBHOOK_SECRET"))
	if err != nil {
		log.Fatalf("WEBHOOK_SECRET: %v", err)
	}
	var mu sync.Mutex
	seen := map[string]bool{}
	http.HandleFunc("POST /hooks", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, "read", http.StatusBadRequest)
			return
		}
		if err := wh.Verify(body, r.Header); err != nil {
			log.Printf("refused a delivery: %v", err)
			http.Error(w, "bad signature", http.StatusBadRequest)
			return
		}
		var ev struct {
			ID   string `json:"id"`
			Type string `json:"type"`
			Data struct {
				Object struct {
					ID     string `json:"id"`
					Status string `json:"status"`
					Amount int64  `json:"amount"`
				} `json:"object"`
			} `json:"data"`
		}
		if err := json.Unmarshal(body, &ev); err != nil {
			http.Error(w, "not an event", http.StatusBadRequest)
			return
		}
		mu.Lock()
		dup := seen[ev.ID]
		seen[ev.ID] = true
		mu.Unlock()
		if !dup {
			fmt.Printf("%s transfer %s %s amount %d (verified)\n", ev.Type, ev.Data.Object.ID, ev.Data.Object.Status, ev.Data.Object.Amount)
		}
		w.WriteHeader(http.StatusNoContent)
	})
	log.Printf("listening on http://%s/hooks", *addr)
	log.Fatal(http.ListenAndServe(*addr, nil))
}
