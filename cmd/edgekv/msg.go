package main

import (
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/edgekv/edgekv/broker/kvclient"
)

// newMsgCmd builds "edgekv msg" with send and monitor: messages through a
// node's MQTT broker by way of the client protocol (msg_send,
// msg_monitor).
func newMsgCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "msg",
		Short: "Send and monitor messages on a node's MQTT broker",
		Long: `Pass messages through a node's embedded MQTT broker, as MoaT-KV's msg_send
and msg_monitor do: payloads are msgpack. TOPIC is an MQTT topic (a/b/c); a
first level starting with ':' is relative to the node's sync prefix (:ping is
edgekv/sync/ping). The KV prefix (the tree's retained messages) and the peers'
sync topics cannot be sent to.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError{fmt.Errorf("unknown command %q for %q", args[0], cmd.CommandPath())}
			}
			return cmd.Help()
		},
	}
	cmd.AddCommand(newMsgSendCmd(), newMsgMonitorCmd())
	return cmd
}

// topicArg splits an MQTT topic argument into its levels.
func topicArg(s string) ([]string, error) {
	if s == "" {
		return nil, usageError{errors.New("empty TOPIC")}
	}
	return strings.Split(s, "/"), nil
}

func newMsgSendCmd() *cobra.Command {
	var (
		f       clientFlags
		literal bool
		raw     bool
	)
	cmd := &cobra.Command{
		Use:   "send TOPIC VALUE",
		Short: "Publish VALUE (YAML, sent as msgpack) on TOPIC",
		Long: `Publish VALUE on TOPIC through the node's broker. VALUE is read as YAML and
sent msgpack-encoded; --string sends it as a msgpack string, --raw sends its
bytes as they are.`,
		Example: "  edgekv msg send home/door '{open: true}'\n  edgekv msg send --raw home/note hello",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := f.check(); err != nil {
				return err
			}
			if literal && raw {
				return usageError{errors.New("give --string or --raw, not both")}
			}
			topic, err := topicArg(args[0])
			if err != nil {
				return err
			}
			var value []byte
			if !raw {
				if value, err = valueArg(args[1], literal); err != nil {
					return err
				}
			}
			c, err := f.dial(cmd.Context())
			if err != nil {
				return err
			}
			defer c.Close()
			if raw {
				err = c.MsgSendRaw(cmd.Context(), topic, []byte(args[1]))
			} else {
				err = c.MsgSend(cmd.Context(), topic, value)
			}
			return asServerError(err)
		},
	}
	f.add(cmd)
	cmd.Flags().BoolVar(&literal, "string", false, "send VALUE as a string, not YAML")
	cmd.Flags().BoolVar(&raw, "raw", false, "send VALUE's bytes as they are, not msgpack")
	return cmd
}

func newMsgMonitorCmd() *cobra.Command {
	var (
		f     clientFlags
		raw   bool
		count int
	)
	cmd := &cobra.Command{
		Use:   "monitor [TOPIC]",
		Short: "Print the messages published on TOPIC (MQTT wildcards allowed; default #)",
		Long: `Print every message published on the node's broker on a topic matching
TOPIC (an MQTT filter: + one level, # the rest; default #) from now on, until
interrupted or --count messages: topic and value, or, for a payload that is
not msgpack (or with --raw), the payload as text (raw) or base64 (raw_base64).
Retained messages are not replayed; the KV prefix's are the tree's values
(edgekv watch shows those).`,
		Example: "  edgekv msg monitor 'home/#'\n  edgekv msg monitor -o json --raw",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := f.check(); err != nil {
				return err
			}
			filter := []string{"#"}
			if len(args) > 0 {
				var err error
				if filter, err = topicArg(args[0]); err != nil {
					return err
				}
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			c, err := f.dial(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			out := cmd.OutOrStdout()
			errDone := errors.New("done")
			n := 0
			err = c.MsgMonitor(ctx, filter, raw, func(m kvclient.Message) error {
				if m.Started {
					return nil
				}
				entry := map[string]any{"topic": strings.Join(m.Topic, "/")}
				switch {
				case m.Data != nil:
					v, err := plain(m.Data)
					if err != nil {
						return err
					}
					entry["value"] = v
				case utf8.Valid(m.Raw):
					entry["raw"] = string(m.Raw)
				default:
					entry["raw_base64"] = base64.StdEncoding.EncodeToString(m.Raw)
				}
				if m.Err != "" {
					entry["error"] = m.Err
				}
				if err := f.printEntry(out, entry); err != nil {
					return err
				}
				if n++; count > 0 && n >= count {
					return errDone
				}
				return nil
			})
			if errors.Is(err, errDone) || ctx.Err() != nil {
				return nil
			}
			return asServerError(err)
		},
	}
	f.add(cmd)
	cmd.Flags().BoolVar(&raw, "raw", false, "print payloads as they are, without msgpack decoding")
	cmd.Flags().IntVarP(&count, "count", "C", 0, "stop after this many messages (0: never)")
	return cmd
}
