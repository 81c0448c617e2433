package queue

import (
	osexec "os/exec"
	"testing"

	"github.com/stretchr/testify/require"
)

// A copy of a Guarded would share its queue but not its value: go vet must say so.
func TestGoVetReportsACopiedGuarded(t *testing.T) {
	gobin, err := osexec.LookPath("go")
	require.NoError(t, err, "the go command runs these tests, so it is on PATH")
	out, err := osexec.Command(gobin, "vet", "./testdata/copyguarded").CombinedOutput()
	require.Error(t, err, "go vet accepted a copied Guarded:\n%s", out)
	require.Contains(t, string(out), "copies lock value")
	require.Contains(t, string(out), "main.go:9")
}
