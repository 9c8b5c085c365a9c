// Package edgekv is the module root. It holds no code: the product lives in
// tree/, broker/, hw/, runner/, boards/ and cmd/edgekv (see README.md).
//
// Its only test, layout_test.go, pins the import direction between those
// folders and keeps the pure packages pure (DESIGN.md §1, STYLE.md
// "Packages"). Nothing imports this package.
package edgekv
