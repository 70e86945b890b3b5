package admin

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/iris-im/iris/actors"
)

// startChatServer starts an admin server on loopback whose WebSocket
// listener is described by clientWS, and returns its base URL.
func startChatServer(t *testing.T, clientWS func() (net.Addr, string, bool)) string {
	t.Helper()
	return startChatServerWithLimits(t, clientWS, ClientLimits{})
}

// startChatServerWithLimits is startChatServer for a node with the client
// limits given.
func startChatServerWithLimits(t *testing.T, clientWS func() (net.Addr, string, bool), limits ClientLimits) string {
	t.Helper()
	s, err := Start(Config{
		Addr:         "127.0.0.1:0",
		Stats:        &actors.Stats{},
		Node:         "e1",
		Role:         "edge",
		ClientWS:     clientWS,
		ClientLimits: limits,
		Logger:       slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatalf("start admin server: %v", err)
	}
	t.Cleanup(s.Stop)
	return "http://" + s.Addr().String()
}

// fetch requests url with a client whose connections close with the test,
// and returns the response and its body.
func fetch(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	transport := &http.Transport{}
	t.Cleanup(transport.CloseIdleConnections)
	resp, err := (&http.Client{Transport: transport}).Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body of %s: %v", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %s, want 200: %s", url, resp.Status, body)
	}
	return resp, string(body)
}

func wsListener(port int, path string, tls bool) func() (net.Addr, string, bool) {
	return func() (net.Addr, string, bool) {
		return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}, path, tls
	}
}

func TestChatPageHasContractIDs(t *testing.T) {
	base := startChatServer(t, wsListener(8086, "/ws", false))
	resp, body := fetch(t, base+"/chat")

	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("Content-Type %q, want text/html", ct)
	}
	for _, id := range []string{"user", "token", "login", "state", "target", "text", "send", "presence", "log"} {
		if !strings.Contains(body, `id="`+id+`"`) {
			t.Errorf("page has no element with id %q", id)
		}
	}
	if !strings.Contains(body, `<ul id="log"`) {
		t.Error("#log is not a list")
	}
	if strings.Contains(body, "{{") {
		t.Error("page still contains a placeholder")
	}

	// The script builds the log entries, so the contract's classes, data
	// attributes and states must appear in it.
	for _, want := range []string{
		`item.className = "msg"`,
		`appendMessage("in"`,
		`appendMessage("out"`,
		`item.dataset.seq`,
		`entry.item.dataset.state = state`,
		`span("text"`,
		`"sending"`,
		`"accepted"`,
		`"read"`,
		`"rejected"`,
		`binaryType = "arraybuffer"`,
		`window.IrisChat = Object.freeze(`,
		`window.IrisChatRules = Object.freeze(`,
		`getBigUint64`,
		`fetch("chat/config.json"`,
		`params.get("autologin") === "1"`,
		`event.key === "Enter"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page script lacks %s", want)
		}
	}
}

func TestChatPageLoadsNothingExternal(t *testing.T) {
	base := startChatServer(t, wsListener(8086, "/ws", false))
	resp, body := fetch(t, base+"/chat")

	if urls := regexp.MustCompile(`(?i)https?://[^\s"'<>)]*`).FindAllString(body, -1); len(urls) > 0 {
		t.Errorf("page refers to other hosts: %v", urls)
	}
	if regexp.MustCompile(`(?i)(src|href)\s*=\s*["']?//`).MatchString(body) {
		t.Error("page has a protocol-relative src or href")
	}
	if regexp.MustCompile(`(?i)<script[^>]*\ssrc=`).MatchString(body) {
		t.Error("page loads a script file instead of inlining it")
	}
	if regexp.MustCompile(`(?i)<link[^>]*stylesheet`).MatchString(body) {
		t.Error("page loads a style sheet file instead of inlining it")
	}
	if regexp.MustCompile(`(?i)@import|\burl\(`).MatchString(body) {
		t.Error("page style sheet loads a resource")
	}

	policy := resp.Header.Get("Content-Security-Policy")
	if !strings.Contains(policy, "default-src 'none'") {
		t.Errorf("Content-Security-Policy %q lacks default-src 'none'", policy)
	}
	if !strings.Contains(policy, "connect-src 'self' ws: wss:") {
		t.Errorf("Content-Security-Policy %q does not allow the config fetch and the WebSocket", policy)
	}
}

// The policy allows the inline blocks by hash, so a hash that differs from
// the served text by one byte would stop the page from running.
func TestChatPolicyHashesInlineBlocks(t *testing.T) {
	base := startChatServer(t, wsListener(8086, "/ws", false))
	resp, body := fetch(t, base+"/chat")
	policy := resp.Header.Get("Content-Security-Policy")

	for _, block := range []struct {
		tag, directive string
		count          int
	}{
		{"style", "style-src", 1},
		{"script", "script-src", 3},
	} {
		matches := regexp.MustCompile(`(?s)<`+block.tag+`>(.*?)</`+block.tag+`>`).FindAllStringSubmatch(body, -1)
		if len(matches) != block.count {
			t.Errorf("page has %d <%s> blocks, want %d", len(matches), block.tag, block.count)
		}
		for _, match := range matches {
			sum := sha256.Sum256([]byte(match[1]))
			hash := "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
			if !regexp.MustCompile(block.directive + ` [^;]*` + regexp.QuoteMeta(hash)).MatchString(policy) {
				t.Errorf("Content-Security-Policy %q lacks %s %s", policy, block.directive, hash)
			}
			if len(match[1]) < 100 {
				t.Errorf("a <%s> block contains only %d bytes", block.tag, len(match[1]))
			}
		}
	}
}

// textAddr is a net.Addr of another network than TCP.
type textAddr string

func (a textAddr) Network() string { return "test" }
func (a textAddr) String() string  { return string(a) }

// defaultChatLimits are the limits of a node with the default config.
var defaultChatLimits = chatLimits{Message: 65536, UserName: 256, Target: 256, ReceiveBuffer: 1048576}

func TestChatConfig(t *testing.T) {
	tests := []struct {
		name     string
		clientWS func() (net.Addr, string, bool)
		want     chatConfig
	}{
		{"plain listener", wsListener(18086, "/ws", false), chatConfig{WSPort: 18086, WSPath: "/ws", TLS: false, Limits: defaultChatLimits}},
		{"TLS listener", wsListener(443, "/chat-socket", true), chatConfig{WSPort: 443, WSPath: "/chat-socket", TLS: true, Limits: defaultChatLimits}},
		{"no listener", func() (net.Addr, string, bool) { return nil, "/ws", false }, chatConfig{WSPort: 0, WSPath: "/ws", Limits: defaultChatLimits}},
		{"nil TCP address", func() (net.Addr, string, bool) { return (*net.TCPAddr)(nil), "/ws", false }, chatConfig{WSPort: 0, WSPath: "/ws", Limits: defaultChatLimits}},
		{"other network", func() (net.Addr, string, bool) { return textAddr("localhost:9443"), "/ws", true }, chatConfig{WSPort: 9443, WSPath: "/ws", TLS: true, Limits: defaultChatLimits}},
		{"address without port", func() (net.Addr, string, bool) { return textAddr("/run/iris.sock"), "/ws", false }, chatConfig{WSPort: 0, WSPath: "/ws", Limits: defaultChatLimits}},
		{"no ClientWS", nil, chatConfig{WSPort: 0, WSPath: "", Limits: defaultChatLimits}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := startChatServer(t, tt.clientWS)
			resp, body := fetch(t, base+"/chat/config.json")

			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q, want application/json", ct)
			}
			if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control %q, want no-store", cc)
			}

			var fields map[string]json.RawMessage
			if err := json.Unmarshal([]byte(body), &fields); err != nil {
				t.Fatalf("decode %q: %v", body, err)
			}
			for _, key := range []string{"ws_port", "ws_path", "tls", "limits"} {
				if _, ok := fields[key]; !ok {
					t.Errorf("config %s has no key %q", body, key)
				}
			}
			if len(fields) != 4 {
				t.Errorf("config %s has %d keys, want 4", body, len(fields))
			}

			var got chatConfig
			if err := json.Unmarshal([]byte(body), &got); err != nil {
				t.Fatalf("decode %q: %v", body, err)
			}
			if got != tt.want {
				t.Errorf("config = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestChatConfigLimits(t *testing.T) {
	tests := []struct {
		name       string
		configured ClientLimits
		want       chatLimits
	}{
		{"zero means defaults", ClientLimits{}, defaultChatLimits},
		{
			"configured values",
			ClientLimits{Message: 1000, UserName: 32, Target: 64, ReceiveBuffer: 4096},
			chatLimits{Message: 1000, UserName: 32, Target: 64, ReceiveBuffer: 4096},
		},
		{
			"one field set",
			ClientLimits{Message: 2 << 20},
			chatLimits{Message: 2 << 20, UserName: 256, Target: 256, ReceiveBuffer: 1048576},
		},
		{
			// The decoder rejects any name above 256 bytes, whatever the config sets.
			"names capped at protocol maximum",
			ClientLimits{Message: 65536, UserName: 1000, Target: 65535, ReceiveBuffer: 1048576},
			chatLimits{Message: 65536, UserName: 256, Target: 256, ReceiveBuffer: 1048576},
		},
		{
			"negative means default",
			ClientLimits{Message: -1, UserName: -1, Target: -1, ReceiveBuffer: -1},
			defaultChatLimits,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := startChatServerWithLimits(t, wsListener(8086, "/ws", false), tt.configured)
			_, body := fetch(t, base+"/chat/config.json")

			var document struct {
				Limits map[string]json.RawMessage `json:"limits"`
			}
			if err := json.Unmarshal([]byte(body), &document); err != nil {
				t.Fatalf("decode %q: %v", body, err)
			}
			for _, key := range []string{"message", "user_name", "target", "receive_buffer"} {
				if _, ok := document.Limits[key]; !ok {
					t.Errorf("limits in %s have no key %q", body, key)
				}
			}
			if len(document.Limits) != 4 {
				t.Errorf("limits in %s have %d keys, want 4", body, len(document.Limits))
			}

			var got chatConfig
			if err := json.Unmarshal([]byte(body), &got); err != nil {
				t.Fatalf("decode %q: %v", body, err)
			}
			if got.Limits != tt.want {
				t.Errorf("limits = %+v, want %+v", got.Limits, tt.want)
			}
		})
	}
}

// The page falls back to the protocol's defaults when the config has no
// limits, so those defaults must equal what the server reports for a zero
// ClientLimits.
func TestChatScriptDefaultLimitsMatchServer(t *testing.T) {
	base := startChatServer(t, wsListener(8086, "/ws", false))
	_, body := fetch(t, base+"/chat")

	want := fmt.Sprintf("message: %d, user_name: %d, target: %d, receive_buffer: %d",
		defaultChatLimits.Message, defaultChatLimits.UserName, defaultChatLimits.Target, defaultChatLimits.ReceiveBuffer)
	if !strings.Contains(body, want) {
		t.Errorf("page script lacks the default limits %q", want)
	}
}

// A node that restarts its listener on another port must not serve the old
// one, so the config is read from ClientWS on every request.
func TestChatConfigFollowsListener(t *testing.T) {
	var port atomic.Int64
	port.Store(20001)
	base := startChatServer(t, func() (net.Addr, string, bool) {
		return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(port.Load())}, "/ws", false
	})

	for _, want := range []int{20001, 20002} {
		port.Store(int64(want))
		_, body := fetch(t, base+"/chat/config.json")
		var got chatConfig
		if err := json.Unmarshal([]byte(body), &got); err != nil {
			t.Fatalf("decode %q: %v", body, err)
		}
		if got.WSPort != want {
			t.Errorf("ws_port = %d, want %d", got.WSPort, want)
		}
	}
}

func TestChatOtherPathsNotFound(t *testing.T) {
	base := startChatServer(t, wsListener(8086, "/ws", false))
	transport := &http.Transport{}
	t.Cleanup(transport.CloseIdleConnections)
	client := &http.Client{Transport: transport}

	for _, path := range []string{"/chat/", "/chat/chat.js", "/chat/config"} {
		resp, err := client.Get(base + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: status %d, want 404", path, resp.StatusCode)
		}
	}
}
