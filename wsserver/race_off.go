//go:build !race

package wsserver

// raceEnabled says that the race detector is on (see nbRead).
const raceEnabled = false
