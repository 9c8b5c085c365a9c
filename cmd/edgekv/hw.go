package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/edgekv/edgekv"
	"github.com/edgekv/edgekv/boards"
	"github.com/edgekv/edgekv/hw"
	"github.com/edgekv/edgekv/tree"
)

// newHwCmd builds "edgekv hw".
func newHwCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "hw",
		Short: "Show and read the board's hardware",
		Long: `Show the 1-wire buses, devices and pins of the board described by a board
config, and what each is bound to; read a sensor once. Both work on the
hardware directly, with no node running (stop the node first if it holds a
bus), and take -c and -n as 'edgekv run' does. 'edgekv hw read --node' asks
a running node for a binding's last value instead.`,
	}
	cmd.AddCommand(newHwListCmd(), newHwReadCmd())
	return cmd
}

// newHwListCmd builds "edgekv hw list".
func newHwListCmd() *cobra.Command {
	var file, name string
	cmd := &cobra.Command{
		Use:   "list [-c FILE] [-n NAME]",
		Short: "List buses, devices and pins, and what each is bound to",
		Long: `List the board's hardware as the config describes it: every sensor binding
with its bus and path, the devices found now on each 1-wire bus the config
uses (w1 sysfs directories and owservers; unbound ones too), and the
board's pins with their bindings. A bus that cannot be read is listed with
its error.`,
		Example: `  edgekv hw list                          # the embedded demo config (sim board)
  edgekv hw list -c board1.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := loadConfig(file, name)
			if err != nil {
				return configProblems(cmd.ErrOrStderr(), err)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			return hwList(ctx, cmd.OutOrStdout(), c)
		},
	}
	cmd.Flags().StringVarP(&file, "config", "c", "", "board config `FILE` (default: the embedded demo config)")
	cmd.Flags().StringVarP(&name, "name", "n", "", "node `NAME`, for a config without a node: line")
	return cmd
}

func hwList(ctx context.Context, out io.Writer, c *boards.Config) error {
	prof, _ := boards.Lookup(c.Board)
	w := tabwriter.NewWriter(out, 2, 8, 2, ' ', 0)
	fmt.Fprintf(w, "board %s: %s\n", prof.Name, prof.Description)
	h := c.Hardware
	bound := map[string]string{} // device id (owserver form) or sim name → path
	buses := []string{}
	if prof.OneWire.Kind == boards.OneWireSysfs {
		buses = append(buses, "w1-sysfs:"+prof.OneWire.Path)
	}
	if len(h.Sensors) > 0 {
		fmt.Fprintln(w, "\nsensors\tbus\tpath\tevery")
		for _, s := range h.Sensors {
			bus := s.BusOn(prof)
			fmt.Fprintf(w, "  %s\t%s\t%s\t%s\n", s.Device, bus, s.Path, s.Every())
			id := s.Device
			if ow, ok := hw.OWID(id); ok {
				id = ow
			}
			bound[bus+"|"+id] = s.Path
			if bus != "sim" && !slices.Contains(buses, bus) {
				buses = append(buses, bus)
			}
		}
	}
	// a switch's channels, each bound as an input or an output
	channel := func(bus, dev, what string) {
		ow, ok := hw.OWID(dev)
		if !ok {
			return
		}
		if !slices.Contains(buses, bus) {
			buses = append(buses, bus)
		}
		if b := bound[bus+"|"+ow]; b != "" {
			what = b + ", " + what
		}
		bound[bus+"|"+ow] = what
	}
	for _, in := range h.Inputs {
		channel(in.BusOn(prof), in.Device, in.Path+" (input, channel "+in.Channel+")")
	}
	for _, o := range h.Outputs {
		channel(o.BusOn(prof), o.Device, o.Path+" (output, channel "+o.Channel+")")
	}
	if len(buses) > 0 {
		fmt.Fprintln(w, "\n1-wire buses\tdevice\tbound to")
		for _, bus := range buses {
			ids, err := scanBus(ctx, bus)
			if err != nil {
				fmt.Fprintf(w, "  %s\t(cannot read: %v)\t\n", bus, err)
				continue
			}
			if len(ids) == 0 {
				fmt.Fprintf(w, "  %s\t(no devices)\t\n", bus)
			}
			for _, id := range ids {
				ow, _ := hw.OWID(id)
				to := bound[bus+"|"+ow]
				if to == "" {
					to = "-"
				}
				fmt.Fprintf(w, "  %s\t%s\t%s\n", bus, id, to)
			}
		}
	}
	pins := map[string]string{}
	for _, in := range h.Inputs {
		if p, ok := prof.Pin(in.Pin); ok {
			pins[p.Name] = "input  " + in.Path
		}
	}
	for _, o := range h.Outputs {
		if p, ok := prof.Pin(o.Pin); ok && o.Device == "" {
			safe := "off"
			if o.Safe {
				safe = "on"
			}
			pins[p.Name] = fmt.Sprintf("output %s (state %s, safe %s)", o.Path, o.StatePath(), safe)
		}
	}
	if len(prof.Pins) > 0 {
		fmt.Fprintln(w, "\npins\tline\tbound to")
		for _, p := range prof.Pins {
			to := pins[p.Name]
			if to == "" {
				to = "-"
			}
			fmt.Fprintf(w, "  %s\t%s:%d\t%s\n", p.Name, p.Chip, p.Line, to)
		}
	}
	return w.Flush()
}

// scanBus lists the devices on a w1-sysfs or owserver bus now.
func scanBus(ctx context.Context, bus string) ([]string, error) {
	switch {
	case strings.HasPrefix(bus, "owserver:"):
		return (&hw.OWServer{Addr: strings.TrimPrefix(bus, "owserver:"), Timeout: 5 * time.Second}).Devices(ctx)
	case bus == "w1-sysfs" || strings.HasPrefix(bus, "w1-sysfs:"):
		return (&hw.W1Sysfs{Dir: strings.TrimPrefix(strings.TrimPrefix(bus, "w1-sysfs"), ":")}).Devices()
	case strings.HasPrefix(bus, "ds248x:"):
		i2c, addr, msg := boards.DS248xBus(bus)
		if msg != "" {
			return nil, fmt.Errorf("%s", msg)
		}
		b, err := hw.OpenDS248x(i2c, addr)
		if err != nil {
			return nil, err
		}
		return b.Devices()
	}
	return nil, fmt.Errorf("%q cannot be scanned", bus)
}

// newHwReadCmd builds "edgekv hw read".
func newHwReadCmd() *cobra.Command {
	var file, name, bus string
	var fromNode bool
	var cf clientFlags
	cmd := &cobra.Command{
		Use:   "read ID|PATH [-c FILE] [--bus BUS]",
		Short: "Read a thermometer once",
		Long: `Read one thermometer now and print its temperature. ID|PATH names a sensor
binding of the config by its device id or its tree path; an id that no
binding names is read on --bus (default: the board's own 1-wire source),
e.g. a sensor just wired that is not bound yet. The reading goes through the
same checks as the node's (85 °C power-on value, sensors that do not
answer). Exit status 1 when it cannot be read.

With --node the node at -s is asked for the binding's entry instead (its
last value, and the fault it reports, if any).`,
		Example: `  edgekv hw read sim-1
  edgekv hw read 28-0316a2794bff -c board1.yaml
  edgekv hw read 28.67C6697351FF --bus owserver:127.0.0.1:4304 -c board1.yaml
  edgekv hw read home.living.temp --node -s board1:27586`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := loadConfig(file, name)
			if err != nil {
				return configProblems(cmd.ErrOrStderr(), err)
			}
			s, found := findSensor(c, args[0])
			if fromNode {
				if !found {
					return usageError{fmt.Errorf("%s: no sensor binding has this id or path (--node reads a binding's entry)", args[0])}
				}
				return readFromNode(cmd, &cf, s)
			}
			if !found {
				s = boards.Sensor{Device: args[0], Bus: bus, Path: "x"}
			} else if bus != "" {
				s.Bus = bus
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			v, err := edgekv.ReadSensor(ctx, c, s)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			where := ""
			if found {
				where = " (" + s.Path + ")"
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s%s: %g °C\n", s.Device, where, v)
			return err
		},
	}
	cmd.Flags().StringVarP(&file, "config", "c", "", "board config `FILE` (default: the embedded demo config)")
	cmd.Flags().StringVarP(&name, "name", "n", "", "node `NAME`, for a config without a node: line")
	cmd.Flags().StringVar(&bus, "bus", "", "the `BUS` to read an unbound id on: sim, w1-sysfs[:DIR] or owserver:HOST:PORT")
	cmd.Flags().BoolVar(&fromNode, "node", false, "ask the running node (-s) for the binding's entry instead of reading the device")
	cf.add(cmd)
	return cmd
}

// findSensor finds the sensor binding whose device id or path is arg.
func findSensor(c *boards.Config, arg string) (boards.Sensor, bool) {
	want, isID := hw.OWID(arg)
	for _, s := range c.Hardware.Sensors {
		if s.Path == arg || s.Device == arg {
			return s, true
		}
		if id, ok := hw.OWID(s.Device); ok && isID && id == want {
			return s, true
		}
	}
	return boards.Sensor{}, false
}

// readFromNode prints the entry of s's path on the running node.
func readFromNode(cmd *cobra.Command, cf *clientFlags, s boards.Sensor) error {
	if err := cf.check(); err != nil {
		return err
	}
	p, err := tree.ParsePath(s.Path)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
	defer cancel()
	cl, err := cf.dial(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	e, found, err := cl.Get(ctx, p, 0)
	if err != nil {
		return asServerError(err)
	}
	if !found {
		return fmt.Errorf("%w: %s: the node has no value there (is the sensor bound on that node?)", tree.ErrNotFound, s.Path)
	}
	v, err := plain(e.Value)
	if err != nil {
		return serverError{err}
	}
	return cf.print(cmd.OutOrStdout(), v)
}
