package mcpserver

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"sync"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/agentmarket/agentmarket/market"
)

// Authenticate returns the agent an HTTP request acts for, or an error
// when the request proves none. BearerAuthenticator is one; the HTTP API's
// request-signature verifier is another.
type Authenticate func(*http.Request) (market.AgentID, error)

// maxCachedServers bounds the per-agent servers Handler keeps.
const maxCachedServers = 4096

// Handler serves the tools over MCP Streamable HTTP for many agents.
// Every request is authenticated afresh and served by the tools of the
// agent it proves: the transport runs stateless, with no session that
// one agent could carry into another's. A request that proves no agent
// gets 401 and an application/problem+json body.
func Handler(svc market.Service, authenticate Authenticate, opts *Options) http.Handler {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.SchemaCache == nil {
		o.SchemaCache = mcp.NewSchemaCache()
	}
	var mu sync.Mutex
	servers := make(map[market.AgentID]*mcp.Server)
	serverFor := func(id market.AgentID) *mcp.Server {
		mu.Lock()
		defer mu.Unlock()
		if s, ok := servers[id]; ok {
			return s
		}
		if len(servers) >= maxCachedServers {
			clear(servers)
		}
		s := New(svc, id, &o)
		servers[id] = s
		return s
	}
	streamable := mcp.NewStreamableHTTPHandler(func(r *http.Request) *mcp.Server {
		id, ok := r.Context().Value(callerKey{}).(market.AgentID)
		if !ok {
			return nil
		}
		return serverFor(id)
	}, &mcp.StreamableHTTPOptions{Stateless: true, JSONResponse: true, Logger: o.Logger})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := authenticate(r)
		if err != nil || id == "" {
			detail := "the request does not prove an agent"
			if err != nil && market.MessageOf(err) != "" {
				detail = market.MessageOf(err)
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="agentmarket-mcp"`)
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusUnauthorized)
			json.NewEncoder(w).Encode(map[string]any{
				"type": "about:blank", "title": "Unauthorized", "status": http.StatusUnauthorized,
				"code": "unauthenticated", "detail": detail,
			})
			return
		}
		streamable.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), callerKey{}, id)))
	})
}

type callerKey struct{}
