// Package hw drives a board's hardware: 1-wire thermometers and GPIO pins
// (DESIGN.md §8).
//
// Today it has the simulated board's devices (Sim): thermometers whose
// readings take a slow random walk, inputs that toggle on their own, and
// outputs that record every level they were told; and OWServer, a client
// of OWFS's owserver (read, write, directory; DS18B20-family thermometers
// through Thermometer); and W1Sysfs, the kernel's w1 driver's files
// (ParseW1Slave reads a w1_slave file, CRC line included). CheckReading
// rejects what such a thermometer reports when it did not measure. GPIO
// opens a real board's pins through periph.io's character-device driver
// (GPIOWith takes another opener: periph's gpiotest pins in tests).
// OneWireBus drives a 1-wire bus through periph.io: a DS2482/DS2483 bridge
// on I²C (OpenDS248x), DS18B20-family thermometers on it through periph's
// ds18b20 driver, and DS2413/DS2408 switches on any of these buses
// (W1Sysfs.Switch, OneWireBus.Switch, OWServer.Switch).
//
// The consumer (the module root's assembly) defines the small interfaces it
// needs (read a temperature, read and wait for an input's edge, drive an
// output); hw's types provide those methods. hw imports boards and
// periph.io only, never the tree, the broker or the runner.
//
// Concurrency: every device is safe for concurrent use; a Sim hands out
// one device per id or pin and keeps it for later calls.
package hw
