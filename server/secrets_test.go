package server_test

import (
	"net/http"
	"strconv"
	"strings"
	"testing"

	"fhirdeid/bulk"
	"fhirdeid/bulk/bulktest"
	"fhirdeid/pipeline"
	"fhirdeid/server"
	"fhirdeid/server/internal/testenv"
)

// TestNoSecretsOrValues plants a client secret, the server's token and the
// synthetic population's identifying values, runs a pipeline (with retried
// faults, so that errors are logged), and checks that none of them appears in
// any API answer, page, metric or log line.
func TestNoSecretsOrValues(t *testing.T) {
	const (
		secret = "client-secret-PLANTED-5e1f"
		token  = "server-token-PLANTED-77aa"
	)
	e := testenv.NewWith(t, 12, func(o *bulktest.Options) {
		o.Auth = &bulktest.AuthOptions{ClientID: "fhirdeid-test", ClientSecret: secret}
		o.Faults = bulktest.Faults{Status5xx: 1, CutDownloads: 1, Download5xx: 1}
	})
	job := e.Job(t, "ehr", mustCron(t, "0 1 * * *"), func(p *pipeline.Pipeline) {
		p.Client.Auth = &bulk.ClientCredentials{HTTP: http.DefaultClient, TokenURL: e.Bulk.TokenURL(),
			ClientID: "fhirdeid-test", Secret: bulk.NewSecret(secret)}
	})
	var logs logBuffer
	s, err := server.New(server.Options{State: e.DB, Token: token, Logger: logs.logger(), Jobs: []*server.Job{job}})
	if err != nil {
		t.Fatal(err)
	}
	startServer(t, s)
	if err := s.Trigger("ehr"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the run", func() bool { return finishedRuns(t, e.DB, "ehr") == 1 })
	rs := runs(t, e.DB, "ehr")
	id := rs[0].ID
	if rs[0].Status != "succeeded" {
		t.Fatalf("run %s: %s", rs[0].Status, rs[0].Error)
	}

	h := s.Handler()
	auth := map[string]string{"Authorization": "Bearer " + token}
	answers := map[string]string{"server log": logs.String()}
	for _, path := range []string{"/api/pipelines", "/api/runs", "/api/runs/" + id, "/api/runs/" + id + "/log",
		"/", "/runs/" + id, "/metrics", "/healthz", "/readyz", "/login", "/api/runs/nosuch"} {
		code, body, _ := do(t, h, "GET", path, auth, nil)
		if code != 200 && path != "/api/runs/nosuch" {
			t.Errorf("GET %s: %d", path, code)
		}
		answers[path] = body
	}
	if !strings.Contains(answers["/api/runs/"+id+"/log"], `"willRetry":true`) {
		t.Error("the run's log has no retried error: the faults did not fire")
	}
	if !strings.Contains(answers["/metrics"], `fhirdeid_retries_total{cause="download_error",pipeline="ehr"}`) {
		t.Error("no retry metric")
	}
	planted := map[string]string{"client secret": secret, "server token": token}
	for i, tok := range e.Bulk.IssuedTokens() {
		planted["access token "+strconv.Itoa(i)] = tok
	}
	for i, v := range e.Pop.Identifiers {
		planted["identifier "+strconv.Itoa(i)] = v
	}
	if len(planted) < 50 {
		t.Fatalf("only %d planted values", len(planted))
	}
	for where, text := range answers {
		for what, v := range planted {
			if strings.Contains(text, v) {
				t.Errorf("%s contains the %s", where, what)
			}
		}
	}
}
