package main

import (
	"github.com/spf13/cobra"

	"github.com/sextant-mesh/sextant/registry/etcd/registrycmd"
)

// newRegistryCommand returns `sextantctl registry` (register, deregister,
// list) for the etcd registry. The implementation lives in
// registry/etcd/registrycmd so that it can be tested in-process.
func newRegistryCommand() *cobra.Command { return registrycmd.NewCommand() }
