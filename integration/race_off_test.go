//go:build !race

package integration

// raceDetector tells timing bounds that the race detector slows the run.
const raceDetector = false
