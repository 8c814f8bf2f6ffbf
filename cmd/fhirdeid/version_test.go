package main

import (
	"bytes"
	"runtime/debug"
	"strings"
	"testing"
)

func TestBuildInfo(t *testing.T) {
	bi := &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "v0.0.0-20261207004632-c65395ca38ea+dirty"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "c65395ca38eaeaf1cd0dd25496b39bc59d811947"},
			{Key: "vcs.time", Value: "2026-12-07T00:46:32Z"}, {Key: "vcs.modified", Value: "true"}}}
	got := readBuildInfo(bi, true)
	if got.Revision != "c65395ca38ea+dirty" || got.Committed != "2026-12-07T00:46:32Z" || !strings.HasPrefix(got.Go, "go1.26.0 ") {
		t.Fatalf("%+v", got)
	}
	if s := got.String(); !strings.Contains(s, "revision c65395ca38ea+dirty, committed 2026-12-07T00:46:32Z") {
		t.Fatal(s)
	}
	bi.Settings[2].Value = "false"
	if got := readBuildInfo(bi, true); got.Revision != "c65395ca38ea" {
		t.Fatalf("clean tree: %q", got.Revision)
	}
	// Built in a worktree: no vcs settings; the stamped revision is used.
	old := buildRevision
	buildRevision = "0123456789ab"
	defer func() { buildRevision = old }()
	if got := readBuildInfo(&debug.BuildInfo{}, true); got.Revision != "0123456789ab" {
		t.Fatalf("stamped: %q", got.Revision)
	}
}

func TestVersionCommand(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(t.Context(), &env{stdout: &out, stderr: &errb, getenv: func(string) string { return "" }}, []string{"version"}); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if !strings.HasPrefix(out.String(), "fhirdeid ") || !strings.Contains(out.String(), "go1.") {
		t.Fatalf("%q", out.String())
	}
}
