package testsupport

// PortRange is portRange, for the tests.
var PortRange = portRange
