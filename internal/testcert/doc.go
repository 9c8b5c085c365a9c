// Package testcert makes the self-signed TLS certificates that tests of the
// broker, the Go client and the node use: one certificate for 127.0.0.1,
// valid for an hour either side of now, which is its own CA, written as PEM
// files. It is for tests only; nothing outside *_test.go imports it.
package testcert
