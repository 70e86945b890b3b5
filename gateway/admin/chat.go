package admin

import (
	"encoding/json"
	"net"
	"net/http"
	"strconv"

	"github.com/iris-im/iris/gateway/wire"
)

// chatPage is a small client of the v2 protocol that runs in the browser and
// talks to this node's WebSocket listener. Its policy allows fetches from
// this server and WebSocket connections to any host, because the listener
// has a port of its own.
var chatPage = newPage("chat.html", []string{"chat.css", "chat-wire.js", "chat-rules.js", "chat.js"}, "'self' ws: wss:")

// ClientLimits are the node's limits on client input, in bytes, that the
// /chat page checks before it sends anything. They are the node config's
// limits.message, limits.user_name, limits.target and limits.receive_buffer.
// A field of 0 or less means the protocol's default from wire.DefaultLimits.
type ClientLimits struct {
	Message       int
	UserName      int
	Target        int
	ReceiveBuffer int
}

// chatConfig is the document at /chat/config.json. The page connects to
// ws(s)://<the host it was loaded from>:WSPort WSPath.
type chatConfig struct {
	WSPort int        `json:"ws_port"` // 0 when the node has no WebSocket listener
	WSPath string     `json:"ws_path"` // empty when Config.ClientWS is nil
	TLS    bool       `json:"tls"`
	Limits chatLimits `json:"limits"`
}

// chatLimits are the sizes in bytes above which the node rejects what a
// client sends, named as in the limits section of the node's config. A SEND2
// whose body exceeds Message gets REJECTED message_too_large, and a name over
// UserName or Target gets invalid_user_name or invalid_target. A WebSocket
// message over ReceiveBuffer, which the page sends for every frame, makes the
// listener close the connection with code 1009.
type chatLimits struct {
	Message       int `json:"message"`
	UserName      int `json:"user_name"`
	Target        int `json:"target"`
	ReceiveBuffer int `json:"receive_buffer"`
}

// chatLimitsOf returns the limits that a node configured with these values
// applies. Fields of 0 or less take the protocol's defaults, and names are
// capped at wire.MaxUserNameLen, as the wire decoder does.
func chatLimitsOf(configured ClientLimits) chatLimits {
	defaults := wire.DefaultLimits()
	orDefault := func(value, fallback int) int {
		if value > 0 {
			return value
		}
		return fallback
	}
	return chatLimits{
		Message:       orDefault(configured.Message, defaults.MaxMessage),
		UserName:      min(orDefault(configured.UserName, defaults.MaxUserName), wire.MaxUserNameLen),
		Target:        min(orDefault(configured.Target, defaults.MaxTarget), wire.MaxUserNameLen),
		ReceiveBuffer: orDefault(configured.ReceiveBuffer, defaults.RecvBuffer),
	}
}

// routeChat registers the chat page at GET /chat, and the location of the
// WebSocket listener with the node's client limits at GET /chat/config.json.
func (s *Server) routeChat(mux *http.ServeMux) {
	mux.Handle("GET /chat", chatPage)
	mux.HandleFunc("GET /chat/config.json", s.chatConfig)
}

func (s *Server) chatConfig(w http.ResponseWriter, _ *http.Request) {
	cfg := chatConfig{Limits: chatLimitsOf(s.cfg.ClientLimits)}
	if s.cfg.ClientWS != nil {
		addr, path, tls := s.cfg.ClientWS()
		cfg.WSPort, cfg.WSPath, cfg.TLS = portOf(addr), path, tls
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
