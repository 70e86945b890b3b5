package admin

import (
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"fmt"
	"net/http"
	"path"
	"strings"
)

// The admin pages are HTML files whose style sheets and scripts are inlined
// when the package loads, in place of slots such as {{chat.css}}. A browser
// then loads nothing but the page and what the page itself connects to.
//
//go:embed web
var webFiles embed.FS

// page is an HTML page with its blocks inlined, and the Content-Security-
// Policy it is served with. The policy allows exactly the inlined blocks,
// by their SHA-256 hashes, so nothing from another host runs even if the
// page requests it.
type page struct {
	body   []byte
	policy string
}

// newPage inlines blocks (names under web/, a .css file as a <style>
// element's text, a .js file as a <script> element's text) into the HTML file
// name. connect is the policy's connect-src. It panics on a slot that is
// missing or repeated, or on a block that contains its own closing tag,
// which would end the element early: both are bugs in the embedded files.
func newPage(name string, blocks []string, connect string) page {
	read := func(name string) string {
		b, err := webFiles.ReadFile("web/" + name)
		if err != nil {
			panic(fmt.Sprintf("admin: embedded file web/%s: %v", name, err))
		}
		return string(b)
	}

	html := read(name)
	hashes := map[string][]string{}
	for _, block := range blocks {
		tag := "script"
		if path.Ext(block) == ".css" {
			tag = "style"
		}
		text := read(block)
		if strings.Contains(strings.ToLower(text), "</"+tag) {
			panic(fmt.Sprintf("admin: web/%s contains </%s, which would end its inlined block", block, tag))
		}
		slot := "{{" + block + "}}"
		if n := strings.Count(html, slot); n != 1 {
			panic(fmt.Sprintf("admin: web/%s has %s %d times, expected once", name, slot, n))
		}
		html = strings.Replace(html, slot, text, 1)
		sum := sha256.Sum256([]byte(text))
		hashes[tag] = append(hashes[tag], "'sha256-"+base64.StdEncoding.EncodeToString(sum[:])+"'")
	}

	policy := strings.Join([]string{
		"default-src 'none'",
		"script-src " + strings.Join(hashes["script"], " "),
		"style-src " + strings.Join(hashes["style"], " "),
		"img-src 'self' data:",
		"connect-src " + connect,
		"base-uri 'none'",
		"form-action 'none'",
		"frame-ancestors 'none'",
	}, "; ")
	return page{body: []byte(html), policy: policy}
}

func (p page) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", p.policy)
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(p.body)
}
