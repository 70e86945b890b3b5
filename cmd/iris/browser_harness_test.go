package main

// A headless Chromium for the browser tests of the admin pages. It starts
// Debian's chromium through chromedp, opens tabs, waits for page state with
// deadlines and saves screenshots. When the test ends, it checks that no
// Chromium process of the test is left.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	_ "image/png" // screenshots are PNG
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

const (
	// requireBrowserEnv makes a missing Chromium fail the browser tests
	// instead of skipping them. `make test` sets it. The name does not start
	// with IRIS_ because the tests pass their environment on to `iris start`,
	// which rejects IRIS_ variables that name no setting.
	requireBrowserEnv = "E2E_REQUIRE_BROWSER"
	// artifactsDirEnv is the directory that the browser tests write their
	// screenshots to. Without it they go to iris-artifacts in the system
	// temp directory.
	artifactsDirEnv = "E2E_ARTIFACTS_DIR"

	// browserStartTimeout bounds the launch of Chromium and the opening of
	// its first tab.
	browserStartTimeout = 30 * time.Second
	// browserExitTimeout bounds the graceful close of Chromium and, after
	// it, the wait for its child processes to exit.
	browserExitTimeout = 10 * time.Second
	// actionTimeout bounds one navigation, query or input action.
	actionTimeout = 10 * time.Second
)

// chromiumPath returns the Chromium binary: /usr/bin/chromium from Debian's
// chromium package, else chromium on PATH.
func chromiumPath() (string, bool) {
	const debianPath = "/usr/bin/chromium"
	if info, err := os.Stat(debianPath); err == nil && !info.IsDir() && info.Mode()&0o111 != 0 {
		return debianPath, true
	}
	if path, err := exec.LookPath("chromium"); err == nil {
		return path, true
	}
	return "", false
}

// browser is one headless Chromium process started for one test. Its tabs
// and its processes are gone when the test ends.
type browser struct {
	t *testing.T
	// ctx is the chromedp context of the first tab. A new tab's context
	// derives from it.
	ctx     context.Context
	pid     int
	dataDir string
	logPath string
}

// startBrowser starts Chromium with a fresh profile under t.TempDir() and
// stops it when the test ends. Without Chromium the test skips, or fails when
// requireBrowserEnv is set.
func startBrowser(t *testing.T) *browser {
	t.Helper()
	path, ok := chromiumPath()
	if !ok {
		const missing = "chromium not found at /usr/bin/chromium or on PATH; install Debian's chromium package with `make browser-deps` (as root)"
		if os.Getenv(requireBrowserEnv) != "" {
			t.Fatalf("%s (%s is set, so the browser tests may not skip)", missing, requireBrowserEnv)
		}
		t.Skip(missing)
	}

	dir := t.TempDir()
	b := &browser{
		t:       t,
		dataDir: filepath.Join(dir, "profile"),
		logPath: filepath.Join(dir, "chromium.log"),
	}
	logFile, err := os.Create(b.logPath)
	if err != nil {
		t.Fatalf("creating the chromium log: %v", err)
	}

	// Chromium's background services (component updates, sync and other
	// background requests) connect to Google's hosts. The flags turn them
	// off, so the browser connects only to the pages that the test opens.
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.UserDataDir(b.dataDir),
		chromedp.WindowSize(1280, 900),
		chromedp.CombinedOutput(logFile),
	)
	ctx, cancelTab := chromedp.NewContext(allocCtx)
	b.ctx = ctx
	t.Cleanup(func() {
		b.close(cancelTab, cancelAlloc)
		logFile.Close()
		if t.Failed() {
			b.logTail()
		}
	})

	// The first action launches the browser, and a deadline on its context
	// would later end the browser too (chromedp v0.23.1, Run). So a timer
	// bounds the launch instead.
	started := make(chan error, 1)
	go func() { started <- chromedp.Do(ctx) }()
	select {
	case err := <-started:
		if err != nil {
			t.Fatalf("starting %s failed: %v", path, err)
		}
	case <-time.After(browserStartTimeout):
		cancelTab()
		t.Fatalf("%s did not open its first tab within %v", path, browserStartTimeout)
	}
	b.pid = chromedp.FromContext(ctx).Browser.Process().Pid
	t.Logf("chromium started: pid %d, %s", b.pid, path)
	return b
}

// newTab opens a tab in a window of its own, so that the page counts as
// visible and gets animation frames. The tab closes when closeTab is called
// or when the test ends. A second call of closeTab does nothing.
func (b *browser) newTab() (tab context.Context, closeTab func()) {
	b.t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx)
	if err := chromedp.Do(ctx); err != nil {
		cancel()
		b.t.Fatalf("opening a tab failed: %v", err)
	}
	b.t.Cleanup(cancel)
	return ctx, cancel
}

// close ends Chromium, gracefully first, and then checks that every process
// it started has exited. A process still running after browserExitTimeout is
// killed by pid and fails the test.
func (b *browser) close(cancelTab, cancelAlloc context.CancelFunc) {
	if b.pid == 0 {
		// The launch failed, so only the contexts are left to end.
		cancelTab()
		cancelAlloc()
		return
	}
	family := processTree(b.pid)

	closeCtx, cancel := context.WithTimeout(b.ctx, browserExitTimeout)
	if err := chromedp.Cancel(closeCtx); err != nil && !errors.Is(err, context.Canceled) {
		b.t.Logf("closing chromium (pid %d) gracefully failed, it is killed instead: %v", b.pid, err)
	}
	cancel()
	cancelTab()
	cancelAlloc()

	var left []process
	eventually(browserExitTimeout, func() bool {
		left = b.leftovers(family)
		return len(left) == 0
	})
	for _, p := range left {
		_ = syscall.Kill(p.pid, syscall.SIGKILL)
	}
	if len(left) > 0 {
		b.t.Errorf("%d chromium processes were still running %v after the browser closed, and were killed by pid: %v",
			len(left), browserExitTimeout, left)
	}
}

// leftovers returns the processes of family that still run, and any other
// process that uses this browser's profile directory.
func (b *browser) leftovers(family []process) []process {
	var left []process
	seen := make(map[int]bool)
	for _, p := range family {
		if now, ok := readProcess(p.pid); ok && now.start == p.start && now.state != "Z" {
			left = append(left, now)
			seen[p.pid] = true
		}
	}
	profileFlag := "--user-data-dir=" + b.dataDir
	for _, p := range allProcesses() {
		if !seen[p.pid] && p.state != "Z" && strings.Contains(p.cmdline, profileFlag) {
			left = append(left, p)
		}
	}
	return left
}

func (b *browser) logTail() {
	out, err := os.ReadFile(b.logPath)
	if err != nil {
		b.t.Logf("reading the chromium log failed: %v", err)
		return
	}
	// On a machine without D-Bus, Chromium fills its log with D-Bus
	// errors that these tests do not depend on.
	var lines []string
	for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		if !strings.Contains(line, ":ERROR:dbus/") {
			lines = append(lines, line)
		}
	}
	b.t.Logf("last chromium log lines without D-Bus errors (%s):\n%s", b.logPath, strings.Join(lines[max(0, len(lines)-30):], "\n"))
}

// process is one entry of /proc.
type process struct {
	pid     int
	ppid    int
	state   string // "R", "S", "Z" and so on, from /proc/PID/stat
	start   uint64 // start time in clock ticks after boot, to tell a reused pid apart
	cmdline string
}

func (p process) String() string {
	cmd := p.cmdline
	if len(cmd) > 80 {
		cmd = cmd[:80] + "..."
	}
	return fmt.Sprintf("pid %d (%s)", p.pid, cmd)
}

// readProcess reads /proc/PID. It returns false when the process is gone or
// when the system has no /proc.
func readProcess(pid int) (process, bool) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return process{}, false
	}
	// The command name in brackets can contain spaces and brackets, so the
	// fields are counted after its last ")".
	end := bytes.LastIndexByte(stat, ')')
	if end < 0 {
		return process{}, false
	}
	fields := strings.Fields(string(stat[end+1:]))
	// Field 3 of stat(5) is the state, 4 the parent pid, 22 the start time.
	if len(fields) < 20 {
		return process{}, false
	}
	ppid, _ := strconv.Atoi(fields[1])
	start, _ := strconv.ParseUint(fields[19], 10, 64)
	cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return process{
		pid:     pid,
		ppid:    ppid,
		state:   fields[0],
		start:   start,
		cmdline: strings.TrimSpace(string(bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '}))),
	}, true
}

var pidDir = regexp.MustCompile(`^[0-9]+$`)

func allProcesses() []process {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var procs []process
	for _, e := range entries {
		if !pidDir.MatchString(e.Name()) {
			continue
		}
		pid, _ := strconv.Atoi(e.Name())
		if p, ok := readProcess(pid); ok {
			procs = append(procs, p)
		}
	}
	return procs
}

// processTree returns the process root and all its descendants.
func processTree(root int) []process {
	procs := allProcesses()
	children := make(map[int][]process)
	var tree []process
	for _, p := range procs {
		children[p.ppid] = append(children[p.ppid], p)
		if p.pid == root {
			tree = append(tree, p)
		}
	}
	for i := 0; i < len(tree); i++ {
		tree = append(tree, children[tree[i].pid]...)
	}
	return tree
}

// runAction runs one chromedp action on a tab within actionTimeout. On error
// it fails the test with the step's description.
func runAction[T any](t *testing.T, tab context.Context, step string, action chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, actionTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, action)
	if err != nil {
		t.Fatalf("%s: %v", step, err)
	}
	return v
}

// navigate opens url in the tab and waits for its load event.
func navigate(t *testing.T, tab context.Context, url string) {
	t.Helper()
	runAction(t, tab, "opening "+url, chromedp.Navigate(url))
}

// evaluate runs a JavaScript expression in the tab and decodes its value.
func evaluate[T any](t *testing.T, tab context.Context, expr string) T {
	t.Helper()
	return runAction(t, tab, "evaluating "+expr, chromedp.Evaluate[T](expr))
}

// waitFor polls a JavaScript expression in the tab every 50 ms until it is
// truthy. After timeout it fails the test with the description of the
// condition and the text of the page.
func waitFor(t *testing.T, tab context.Context, condition, expr string, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, timeout+actionTimeout)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr,
		chromedp.WithPollingInterval(50*time.Millisecond),
		chromedp.WithPollingTimeout(timeout)))
	if err != nil {
		t.Fatalf("waiting %v for %s (%s): %v\npage text:\n%s", timeout, condition, expr, err, pageText(tab))
	}
}

// pageText returns the visible text of the tab for failure messages, at most
// 2000 characters.
func pageText(tab context.Context) string {
	ctx, cancel := context.WithTimeout(tab, 2*time.Second)
	defer cancel()
	text, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
	if err != nil {
		return fmt.Sprintf("(reading the page text failed: %v)", err)
	}
	if len(text) > 2000 {
		text = text[:2000] + "\n..."
	}
	return text
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	return strconv.Quote(s)
}

// elementText returns the trimmed textContent of the element that the CSS
// selector finds, and fails the test when there is none.
func elementText(t *testing.T, tab context.Context, selector string) string {
	t.Helper()
	text := evaluate[*string](t, tab, fmt.Sprintf(
		`(() => { const e = document.querySelector(%s); return e ? e.textContent.trim() : null; })()`, jsString(selector)))
	if text == nil {
		t.Fatalf("the page has no element %s\npage text:\n%s", selector, pageText(tab))
	}
	return *text
}

// elementNumber returns the number in the text of an element, which must
// contain a plain number only.
func elementNumber(t *testing.T, tab context.Context, selector string) float64 {
	t.Helper()
	text := elementText(t, tab, selector)
	n, err := strconv.ParseFloat(text, 64)
	if err != nil {
		t.Fatalf("%s contains %q, want a plain number", selector, text)
	}
	return n
}

// artifactsDir returns the directory for test artifacts: artifactsDirEnv if
// set, else iris-artifacts in the system temp directory.
func artifactsDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv(artifactsDirEnv)
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "iris-artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("creating the artifacts directory: %v", err)
	}
	return dir
}

// saveScreenshot writes a full-page PNG of the tab to the artifacts directory
// as TESTNAME-name.png. It fails the test unless the image decodes and has
// more than one color.
func saveScreenshot(t *testing.T, tab context.Context, name string) {
	t.Helper()
	png := runAction(t, tab, "taking a screenshot", chromedp.FullScreenshot(100))

	img, format, err := image.Decode(bytes.NewReader(png))
	if err != nil {
		t.Fatalf("the %s screenshot does not decode: %v", name, err)
	}
	if format != "png" {
		t.Fatalf("the %s screenshot is %s, want png", name, format)
	}
	if colors := distinctColors(img, 2); colors < 2 {
		t.Fatalf("the %s screenshot (%v) is one color only", name, img.Bounds().Size())
	}

	file := strings.NewReplacer("/", "-", " ", "_").Replace(t.Name()) + "-" + name + ".png"
	path := filepath.Join(artifactsDir(t), file)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatalf("writing the %s screenshot: %v", name, err)
	}
	t.Logf("screenshot %s: %s", name, path)
}

// distinctColors counts the colors of img, stopping at limit.
func distinctColors(img image.Image, limit int) int {
	seen := make(map[[4]uint32]bool)
	bounds := img.Bounds()
	for y := bounds.Min.Y; y < bounds.Max.Y; y++ {
		for x := bounds.Min.X; x < bounds.Max.X; x++ {
			r, g, b, a := img.At(x, y).RGBA()
			seen[[4]uint32{r, g, b, a}] = true
			if len(seen) >= limit {
				return len(seen)
			}
		}
	}
	return len(seen)
}
