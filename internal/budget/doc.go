// Package budget shares a fixed number of bytes among the connections of a
// node: what they may hold at once of messages still being received.
//
// A client can announce a large message and send it slowly, or never
// finish it; the node must buffer what has come (the client protocol) or
// the whole announced size (mochi reads an MQTT packet into one buffer of
// its announced length). Each such buffer is taken from one Budget first.
// A connection that finds too little left waits (it is not read meanwhile,
// so TCP slows its client down) until others give bytes back, for at most
// the budget's wait; then it gets an error that says why, and its
// connection is closed. What the node holds in unfinished messages thus
// never exceeds the budget, whatever the clients do.
//
// It owns nothing but its counts and imports only the standard library. A
// Budget is safe for concurrent use; Take waits on a channel that also
// ends with its context. It starts no goroutines.
package budget
