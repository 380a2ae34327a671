//go:build !profile

package main

// stopProfile does nothing outside profiling builds (see profile.go).
func stopProfile() {}
