// Package boundary holds the test that keeps the module's layering honest.
package boundary

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const module = "github.com/dispatchkit/dispatchkit"

// imports returns, for every non-test Go file under dir, its import paths.
func imports(t *testing.T, dir string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "bench" || d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && path != dir {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			out[path] = append(out[path], p)
		}
		return nil
	})
	require.NoError(t, err)
	return out
}

func isStd(p string) bool { return !strings.Contains(strings.SplitN(p, "/", 2)[0], ".") }

// queue and dispatch import only the standard library (and the module's own internals), so a
// user who wants queues pulls in no WebSocket or OpenTelemetry code.
func TestQueueAndDispatchImportOnlyTheStandardLibrary(t *testing.T) {
	for _, pkg := range []string{"queue", "dispatch"} {
		dir := filepath.Join("..", "..", pkg)
		if _, err := os.Stat(dir); err != nil {
			continue
		}
		for file, imps := range imports(t, dir) {
			for _, p := range imps {
				ok := isStd(p) || p == module+"/queue" || strings.HasPrefix(p, module+"/internal/")
				require.True(t, ok, "%s imports %s: queue and dispatch may import only the standard library", file, p)
			}
		}
	}
}

// Test-only libraries never reach code users import.
func TestTestLibrariesStayInTests(t *testing.T) {
	for file, imps := range imports(t, filepath.Join("..", "..")) {
		for _, p := range imps {
			for _, banned := range []string{"github.com/stretchr/testify", "go.uber.org/goleak"} {
				require.False(t, strings.HasPrefix(p, banned), "%s imports %s outside a test", file, p)
			}
		}
	}
}

// tracing (the Observer and the Inspector) imports the OpenTelemetry API only: the SDK and
// the exporters (autoexport: gRPC, Prometheus, OTLP) belong to tracing/otelsetup, which
// programs import from main, so that instrumenting code does not link them.
func TestTracingImportsOnlyTheOTelAPI(t *testing.T) {
	dir := filepath.Join("..", "..", "tracing")
	for file, imps := range imports(t, dir) {
		if filepath.Dir(file) != dir {
			continue // subpackages: otelsetup may link the SDK
		}
		for _, p := range imps {
			ok := isStd(p) || (strings.HasPrefix(p, module+"/") && !strings.HasPrefix(p, module+"/tracing/")) ||
				(strings.HasPrefix(p, "go.opentelemetry.io/otel") && !strings.HasPrefix(p, "go.opentelemetry.io/otel/sdk") &&
					!strings.HasPrefix(p, "go.opentelemetry.io/otel/exporters"))
			require.True(t, ok, "%s imports %s: tracing may import only the OpenTelemetry API", file, p)
		}
	}
	// And nothing it imports brings them in: tracing.Setup reaches otelsetup only through
	// internal/setupreg, which otelsetup fills when a program links it.
	out, err := exec.Command("go", "list", "-deps", module+"/tracing").CombinedOutput()
	require.NoError(t, err, "%s", out)
	for _, p := range strings.Fields(string(out)) {
		for _, bad := range []string{"go.opentelemetry.io/otel/sdk", "go.opentelemetry.io/contrib", "google.golang.org/grpc", "github.com/prometheus", module + "/tracing/otelsetup"} {
			require.False(t, strings.HasPrefix(p, bad), "tracing links %s, which belongs to tracing/otelsetup's programs", p)
		}
	}
}
