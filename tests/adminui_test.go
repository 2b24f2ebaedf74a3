package tests

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/openai/openai-go/v3"
)

// screenshotDirEnv names the folder the browser test saves its screenshots
// in (make screenshots sets it); unset, they go to a temporary folder.
const screenshotDirEnv = "LLM_PROXY_SCREENSHOT_DIR"

// TestAdminUIInBrowser drives the admin console in a real headless
// Chromium through Envoy, as an operator would: sign in, create a project
// and a token (read once), use the token with openai-go, see the request on
// the dashboard and usage page, revoke the token, find the revocation in the
// audit log, purge the cache, sign out. Every page is saved as a PNG.
func TestAdminUIInBrowser(t *testing.T) {
	s := startStack(t, stackOptions{})
	shots := os.Getenv(screenshotDirEnv)
	if shots == "" {
		shots = t.TempDir()
	} else if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}

	ctx := browser(t, 3*time.Minute, chromedp.WindowSize(1280, 800))

	base := s.envoyURL + "/admin/"
	// fail stops the test at a step that went wrong, with the page's HTML.
	fail := func(step string, err error) {
		t.Helper()
		page, _ := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("html")))
		t.Fatalf("%s: %v\npage:\n%s", step, err, page)
	}
	run := func(step string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			fail(step, err)
		}
	}
	eval := func(step, expr string) any {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[any](expr))
		if err != nil {
			fail(step, err)
		}
		return v
	}
	// A form's POST or GET loads a new document. Until it has, the old one
	// may already hold what the next step waits for (a row, a flash), and a
	// screenshot taken mid-navigation can hang: stale marks the document
	// being left, and fresh waits in the next one only.
	stale := func(step string) { eval(step, `document.documentElement.dataset.stale = "1"`) }
	fresh := func(sel string) string { return "html:not([data-stale]) " + sel }
	shot := func(name string) {
		t.Helper()
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			fail("screenshot "+name, err)
		}
		if err := os.WriteFile(filepath.Join(shots, name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			fail("read "+sel, err)
		}
		return strings.TrimSpace(v)
	}
	html := func() string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("html")))
		if err != nil {
			fail("read the page", err)
		}
		return v
	}
	location := func() string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Location())
		if err != nil {
			fail("read the location", err)
		}
		return v
	}
	type id = chromedp.ID
	type css = chromedp.CSS

	// Sign in. The console sends an anonymous browser to the sign-in page,
	// where the token field has the focus.
	run("open the console", chromedp.Navigate(base), chromedp.WaitVisible(id("token")))
	if got := location(); got != s.envoyURL+"/admin/login?next=%2Fadmin%2F" {
		t.Fatalf("anonymous browser at %s", got)
	}
	shot("login")
	run("sign in",
		chromedp.SendKeys(id("token"), s.mgmtToken),
		chromedp.Click(id("sign-in")),
		chromedp.WaitVisible(id("totals-h")))
	if !strings.Contains(html(), "No projects yet — ") {
		t.Error("the empty dashboard does not say what to do next")
	}
	// Keyboard: the first Tab reaches the skip link, which moves the focus
	// to the page's content.
	run("tab to the skip link", chromedp.KeyEvent(kb.Tab))
	if focused := eval("focus", `document.activeElement.className`); focused != "skip" {
		t.Errorf("first Tab focuses %q, want the skip link", focused)
	}
	run("follow the skip link", chromedp.KeyEvent(kb.Enter))
	if focused := eval("focus", `document.activeElement.id`); focused != "main" {
		t.Errorf("the skip link moves the focus to %q, want main", focused)
	}

	// Create a project.
	run("open projects", chromedp.Navigate(base+"projects"), chromedp.WaitVisible(id("create-project")))
	if got := text(".empty"); got != "No projects yet — create one below." {
		t.Errorf("projects empty state %q", got)
	}
	run("create a project",
		chromedp.SendKeys(id("name"), "team-a"),
		chromedp.SendKeys(id("openai_api_key"), realKey),
		chromedp.SendKeys(id("monthly_budget_usd"), "250"),
		chromedp.Click(id("create-project-submit")),
		chromedp.WaitVisible(id("project-id")))
	pid := text("#project-id")
	if !strings.HasPrefix(pid, "proj_") || text(".flash") != "Project team-a created." {
		t.Fatalf("project %q, flash %q", pid, text(".flash"))
	}
	if page := html(); strings.Contains(page, "REALKEY") || !strings.Contains(page, "sk-p…wxyz") {
		t.Error("the project page shows the key unmasked, or not its mask")
	}
	shot("project")
	run("open projects", chromedp.Navigate(base+"projects"), chromedp.WaitVisible(id("projects")))
	shot("projects")

	// Create a token: its secret is shown once.
	run("open tokens", chromedp.Navigate(base+"tokens?project_id="+pid), chromedp.WaitVisible(id("create-token")))
	run("create a token",
		chromedp.SendKeys(id("max_requests"), "100"),
		chromedp.Click(id("create-token-submit")),
		chromedp.WaitVisible(id("created-token")))
	secret, err := chromedp.Run(ctx, chromedp.Value(id("secret")))
	if err != nil {
		fail("read the secret", err)
	}
	if !strings.HasPrefix(secret, "llmp_") {
		t.Fatalf("secret %q", secret)
	}
	// The copy button is the console's one script, loaded under its CSP.
	run("copy", chromedp.Click(id("copy-secret")))
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.getElementById("copy-secret").textContent !== "Copy"`)); err != nil {
		fail("wait for the copy button", err)
	}
	if got := text("#copy-secret"); got != "Copied" && got != "Press Ctrl+C" {
		t.Errorf("the copy button says %q after a click", got)
	}
	shot("tokens")
	run("reload tokens", chromedp.Navigate(base+"tokens?project_id="+pid), chromedp.WaitVisible(id("tokens")))
	if strings.Contains(html(), secret) {
		t.Fatal("the token's secret is shown a second time")
	}
	tokenID := eval("token id", `document.querySelector("#tokens tr[data-token]").dataset.token`)

	// Use the token through Envoy with the official SDK.
	var res *openai.ChatCompletion
	res, err = s.client(secret).Chat.Completions.New(context.Background(), chatParams("hello from the console test"))
	if err != nil {
		t.Fatalf("chat with the console's token: %v", err)
	}
	promptTokens, completionTokens := res.Usage.PromptTokens, res.Usage.CompletionTokens

	// The dashboard shows it once the roll-up is flushed (every 100ms here).
	deadline := time.Now().Add(20 * time.Second)
	for {
		run("open the dashboard", chromedp.Navigate(base), chromedp.WaitVisible(id("totals-h")))
		if text(`[data-stat="requests"]`) == "1" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the dashboard never showed the request:\n%s", html())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if got := text("#topp-h + .scroll tbody tr td"); got != "team-a" {
		t.Errorf("top project %q", got)
	}
	shot("dashboard")

	// The usage page: one row for the model, with the SDK's token counts.
	run("open usage", chromedp.Navigate(base+"usage?project_id="+pid), chromedp.WaitVisible(id("usage")))
	cells, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll("#usage tbody tr td")).map(td => td.textContent)`))
	if err != nil {
		fail("read the usage row", err)
	}
	if len(cells) != 9 || cells[1] != "gpt-4.1-mini" || cells[2] != "1" || cells[3] != "0" ||
		cells[4] != fmt.Sprint(promptTokens) || cells[5] != fmt.Sprint(completionTokens) {
		t.Errorf("usage row %q, want gpt-4.1-mini, 1 request, 0 errors, %d + %d tokens", cells, promptTokens, completionTokens)
	}
	shot("usage")

	// Revoke the token: the gateway refuses it from then on.
	run("open tokens", chromedp.Navigate(base+"tokens?project_id="+pid), chromedp.WaitVisible(id("tokens")))
	stale("mark the tokens page")
	run("revoke", chromedp.Click(css(`#tokens button.danger`)), chromedp.WaitVisible(css(fresh(".flash"))))
	if got := text(".flash"); !strings.HasSuffix(got, "… revoked.") || text("#tokens tbody td:nth-child(3)") != "revoked" {
		t.Errorf("after revoking: flash %q", got)
	}
	if _, err := s.client(secret).Chat.Completions.New(context.Background(), chatParams("after revocation")); statusOf(err) != 401 {
		t.Errorf("the revoked token: %v, want 401", err)
	}

	// What the API records as the address of a client on this machine
	// going through Envoy (which writes the host's address for a loopback
	// peer): the console must record the browser's the same way.
	s.createProject("made-with-the-api", "sk-other-0123456789abcdef")
	var created struct {
		Data []struct {
			Actor         string `json:"actor"`
			ClientAddress string `json:"client_address"`
		} `json:"data"`
	}
	s.mustManage("GET", "/manage/audit?action=project.create", nil, 200, &created)
	var envoySaw string
	for _, e := range created.Data {
		if strings.HasPrefix(e.Actor, "management:") {
			envoySaw = e.ClientAddress
		}
	}
	if envoySaw == "" {
		t.Fatalf("audit of the API's project: %+v", created)
	}

	// The audit page shows the revocation, by admin-ui from the browser's
	// address as Envoy saw it.
	run("open audit", chromedp.Navigate(base+"audit"), chromedp.WaitVisible(id("audit")))
	stale("mark the unfiltered audit page")
	run("filter audit", chromedp.SetValue(id("action"), "token.revoke"), chromedp.SendKeys(id("actor"), "admin-ui"),
		chromedp.Click(css(".filters button")), chromedp.WaitVisible(css(fresh(`#audit tr[data-action="token.revoke"]`))))
	shot("audit")
	rows := eval("count rows", `document.querySelectorAll("#audit tbody tr").length`)
	if rows != 1.0 || text("#audit tbody td:nth-child(3)") != "admin-ui" || text("#audit tbody td:nth-child(5)") != envoySaw {
		t.Errorf("audit: %v rows, actor %q, client %q", rows, text("#audit tbody td:nth-child(3)"), text("#audit tbody td:nth-child(5)"))
	}
	run("open the event", chromedp.Click(css("#audit tbody a")), chromedp.WaitVisible(id("event")))
	if text("#event-actor") != "admin-ui" || text("#event-client") != envoySaw {
		t.Errorf("audit event: actor %q, client %q", text("#event-actor"), text("#event-client"))
	}
	shot("audit-event")

	// Purge the whole cache.
	run("open cache", chromedp.Navigate(base+"cache"), chromedp.WaitVisible(id("purge")))
	stale("mark the cache page")
	run("purge", chromedp.Click(css(`input[name="scope"][value="all"]`)),
		chromedp.Click(css("#purge button")), chromedp.WaitVisible(css(fresh(".flash"))))
	if got := text(".flash"); !strings.HasPrefix(got, "Purged ") {
		t.Errorf("purge: %q", got)
	}
	shot("cache")

	// Phone width: nothing wider than the screen but the tables' own scroll boxes.
	run("phone width", chromedp.EmulateViewport(390, 844))
	for _, page := range []string{"", "projects", "projects/" + pid, "tokens", "tokens/" + fmt.Sprint(tokenID), "usage?project_id=" + pid, "audit", "cache"} {
		run("open "+page, chromedp.Navigate(base+page), chromedp.WaitVisible(css("main")))
		if fits := eval("measure", `document.documentElement.scrollWidth <= window.innerWidth`); fits != true {
			t.Errorf("/admin/%s is wider than a phone", page)
		}
		// Every field has a label a screen reader reads out.
		unlabelled := eval("labels", `Array.from(document.querySelectorAll("input:not([type=hidden]), select"))
			.filter(e => !(e.labels && e.labels.length) && !e.getAttribute("aria-label")).map(e => e.name).join(",")`)
		if unlabelled != "" {
			t.Errorf("/admin/%s has fields without a label: %v", page, unlabelled)
		}
	}
	run("open the dashboard", chromedp.Navigate(base), chromedp.WaitVisible(id("totals-h")))
	shot("dashboard-phone")
	run("desktop width", chromedp.EmulateViewport(1280, 800))

	// Sign out: the console is closed again.
	run("sign out", chromedp.Navigate(base), chromedp.WaitVisible(id("sign-out")),
		chromedp.Click(id("sign-out")), chromedp.WaitVisible(id("token")))
	run("come back", chromedp.Navigate(base+"projects"), chromedp.WaitVisible(id("token")))
	if got := location(); !strings.HasPrefix(got, s.envoyURL+"/admin/login") {
		t.Errorf("after signing out, /admin/projects is at %s", got)
	}
	t.Logf("screenshots in %s", shots)
}
