// Package testutil holds what the module's tests share. It imports only the standard
// library (testing included), so that packages whose non-test code must stay
// standard-library only can use it from their tests.
package testutil
