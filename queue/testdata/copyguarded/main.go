// Command copyguarded copies a queue.Guarded, which go vet must report (see
// TestGoVetReportsACopiedGuarded).
package main

import "github.com/dispatchkit/dispatchkit/queue"

func main() {
	g := queue.NewGuarded(1)
	c := *g // go vet: assignment copies lock value
	c.Sync(func(*int) {})
}
