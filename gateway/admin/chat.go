package admin

import (
	"encoding/json"
	"net"
	"net/http"
	"strconv"
)

// chatPage is a small client of the v2 protocol that runs in the browser and
// talks to this node's WebSocket listener. Its policy allows fetches from
// this server and WebSocket connections to any host, because the listener
// has a port of its own.
var chatPage = newPage("chat.html", []string{"chat.css", "chat-wire.js", "chat.js"}, "'self' ws: wss:")

// chatConfig is the document at /chat/config.json. The page connects to
// ws(s)://<the host it was loaded from>:WSPort WSPath.
type chatConfig struct {
	WSPort int    `json:"ws_port"` // 0 when the node has no WebSocket listener
	WSPath string `json:"ws_path"` // empty when Config.ClientWS is nil
	TLS    bool   `json:"tls"`
}

// routeChat registers the chat page at GET /chat and the location of the
// WebSocket listener at GET /chat/config.json.
func (s *Server) routeChat(mux *http.ServeMux) {
	mux.Handle("GET /chat", chatPage)
	mux.HandleFunc("GET /chat/config.json", s.chatConfig)
}

func (s *Server) chatConfig(w http.ResponseWriter, _ *http.Request) {
	var cfg chatConfig
	if s.cfg.ClientWS != nil {
		addr, path, tls := s.cfg.ClientWS()
		cfg = chatConfig{WSPort: portOf(addr), WSPath: path, TLS: tls}
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	// The listener's port changes when a node restarts with port 0.
	h.Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(cfg)
}

// portOf returns the port of a bound address, or 0 for a nil address or one
// without a numeric port.
func portOf(addr net.Addr) int {
	if addr == nil {
		return 0
	}
	if tcp, ok := addr.(*net.TCPAddr); ok {
		if tcp == nil {
			return 0
		}
		return tcp.Port
	}
	_, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return 0
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		return 0
	}
	return n
}
