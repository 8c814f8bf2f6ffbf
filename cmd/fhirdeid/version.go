package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"

	// Time zone data built in, so a schedule's timezone works in an image
	// without /usr/share/zoneinfo (deploy/Containerfile is FROM scratch).
	_ "time/tzdata"
)

// Stamped by deploy/build-image with -ldflags "-X main.buildTime=... -X
// main.buildRevision=...": the build's time (RFC 3339), which the Go build
// information lacks, and the short revision ("+dirty" when modified), which
// Go does not record when building in a git worktree (.git is a file there).
var buildTime, buildRevision string

// buildInfo is what "fhirdeid version" prints, read from the binary's build
// information (module version, VCS revision and time, dirty flag) and the
// link-time stamps.
type buildInfo struct {
	Version   string // module version, or Version when stamped with -X
	Revision  string // short VCS revision, with "+dirty" when modified
	Committed string // the revision's commit time
	Built     string // build time, when stamped
	Go        string // Go version and platform
}

func init() {
	// A binary built with "go build" in a checkout has a module version
	// (a pseudo-version such as v0.0.0-20261207004632-c65395c1a2b3+dirty);
	// one built with -X main.Version keeps that.
	if Version == "dev" {
		if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			Version = bi.Main.Version
		}
	}
}

// readBuildInfo collects the version details of the running binary.
func readBuildInfo(bi *debug.BuildInfo, ok bool) buildInfo {
	out := buildInfo{Version: Version, Built: buildTime, Go: runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH}
	if !ok || bi == nil {
		out.Revision = buildRevision
		return out
	}
	var dirty bool
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			out.Revision = s.Value
			if len(out.Revision) > 12 {
				out.Revision = out.Revision[:12]
			}
		case "vcs.time":
			out.Committed = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if out.Revision != "" && dirty {
		out.Revision += "+dirty"
	}
	if out.Revision == "" {
		out.Revision = buildRevision
	}
	if bi.GoVersion != "" {
		out.Go = bi.GoVersion + " " + runtime.GOOS + "/" + runtime.GOARCH
	}
	return out
}

// String is one line: "fhirdeid VERSION (revision R, committed T, built T, GO)".
func (b buildInfo) String() string {
	var parts []string
	if b.Revision != "" {
		parts = append(parts, "revision "+b.Revision)
	}
	if b.Committed != "" {
		parts = append(parts, "committed "+b.Committed)
	}
	if b.Built != "" {
		parts = append(parts, "built "+b.Built)
	}
	parts = append(parts, b.Go)
	return "fhirdeid " + b.Version + " (" + strings.Join(parts, ", ") + ")"
}

// writeVersion prints the version line of "fhirdeid version".
func writeVersion(w io.Writer) {
	fmt.Fprintln(w, readBuildInfo(debug.ReadBuildInfo()))
}
