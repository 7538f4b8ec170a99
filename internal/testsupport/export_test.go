package testsupport

// PortRange is portRange, for the tests.
var PortRange = portRange

// NewTailBuffer is a tailBuffer keeping max bytes, for the tests.
func NewTailBuffer(max int) interface {
	Write([]byte) (int, error)
	String() string
} {
	return &tailBuffer{max: max}
}
