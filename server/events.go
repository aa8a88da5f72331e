package server

import (
	"encoding/json"
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/transferd/transferd/transfer"
)

// eventJSON is an Event: {"id","type","created_at","data":{"object": <Transfer as it was>}}.
type eventJSON struct {
	ID        string        `json:"id"`
	Type      string        `json:"type"`
	CreatedAt string        `json:"created_at"`
	Data      eventDataJSON `json:"data"`
}

type eventDataJSON struct {
	Object transferJSON `json:"object"`
}

func toEventJSON(e transfer.Event, seesSource bool) eventJSON {
	return eventJSON{ID: e.ID.String(), Type: string(e.Type), CreatedAt: timestamp(e.CreatedAt),
		Data: eventDataJSON{Object: toTransferJSON(e.Transfer, seesSource)}}
}

// EventJSON is the body of an event as a viewer sees it: all of the transfer when seesSource (its
// payer, or an admin), else what its payee sees. Webhook deliveries send exactly this, so a delivery
// and GET /v1/events/{id} say the same.
func EventJSON(e transfer.Event, seesSource bool) ([]byte, error) {
	return json.Marshal(toEventJSON(e, seesSource))
}

// seesSource reports whether the caller sees all of an event's transfer.
func seesSource(who caller, e transfer.Event) bool {
	return who.admin() || (e.SourceOwnerID != uuid.Nil && e.SourceOwnerID == who.ID)
}

// handleListEvents lists the events of the transfers the caller may see (admins: all), newest first;
// filters type and transfer_id.
func (s *Server) handleListEvents(c *gin.Context) {
	var fe fieldErrors
	p := parsePage(c, &fe)
	who := callerOf(c)
	f := transfer.EventFilter{}
	if !who.admin() {
		f.VisibleTo = who.ID
	}
	if raw, ok := c.GetQuery("type"); ok {
		f.Type = transfer.EventType(raw)
		if !f.Type.Valid() {
			fe.add("type", "must be one of transfer.created, transfer.held, transfer.completed, transfer.failed, transfer.cancelled")
		}
	}
	if raw, ok := c.GetQuery("transfer_id"); ok {
		f.TransferID = parseID(&fe, "transfer_id", raw)
	}
	if err := fe.err(); err != nil {
		abortWithError(c, err)
		return
	}
	list, err := s.ledger.Events(c.Request.Context(), f, p)
	if err != nil {
		abortWithError(c, err)
		return
	}
	c.JSON(http.StatusOK, toListJSON(list, func(e transfer.Event) eventJSON { return toEventJSON(e, seesSource(who, e)) }))
}

// handleGetEvent returns an event of a transfer the caller may see; 404 otherwise.
func (s *Server) handleGetEvent(c *gin.Context) {
	id, ok := idParam(c, "event")
	if !ok {
		return
	}
	who := callerOf(c)
	visibleTo := who.ID
	if who.admin() {
		visibleTo = uuid.Nil
	}
	e, err := s.ledger.Event(c.Request.Context(), id, visibleTo)
	if err != nil {
		abortWithError(c, err)
		return
	}
	c.JSON(http.StatusOK, toEventJSON(e, seesSource(who, e)))
}
