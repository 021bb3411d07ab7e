package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/sextant-mesh/sextant/api/debug"
	"github.com/sextant-mesh/sextant/internal/buildinfo"
)

// versionInfo is version's -o json|yaml form.
type versionInfo struct {
	Client       string `json:"clientVersion"`
	ClientCommit string `json:"clientCommit,omitempty"`
	// Server is nil when the control plane could not be asked.
	Server      *debug.Version `json:"server,omitempty"`
	ServerAddr  string         `json:"serverAddress,omitempty"`
	ServerError string         `json:"serverError,omitempty"`
}

func newVersionCommand(e *env, g *globalFlags) *cobra.Command {
	var output string
	var clientOnly bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the sextantctl version and, if reachable, the control plane's",
		Long: `Print the version sextantctl was built from and, when the control plane at
--addr answers, its version and instance name. An unreachable control plane
is reported but is not an error.`,
		Example: `  sextantctl version
  sextantctl version --client
  sextantctl version -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output, outJSON, outYAML); err != nil {
				return err
			}
			bi := buildinfo.Get()
			info := versionInfo{Client: bi.Version, ClientCommit: bi.Commit}
			if !clientOnly {
				c, err := g.client(cmd, e)
				if err != nil {
					return err
				}
				info.ServerAddr = c.addr
				if v, err := c.Version(cmd.Context()); err != nil {
					info.ServerError = err.Error()
				} else {
					info.Server = v
				}
			}
			w := cmd.OutOrStdout()
			if output != outTable {
				return writeStructured(w, output, info)
			}
			fmt.Fprintf(w, "client version: %s\n", buildinfo.Info{Version: info.Client, Commit: info.ClientCommit})
			switch {
			case clientOnly:
			case info.Server != nil:
				fmt.Fprintf(w, "control plane version: %s (instance %s at %s)\n",
					buildinfo.Info{Version: info.Server.Version, Commit: info.Server.Commit}, orDash(info.Server.Instance), info.ServerAddr)
			default:
				fmt.Fprintf(cmd.ErrOrStderr(), "control plane version: unknown: %s\n", info.ServerError)
			}
			return nil
		},
	}
	addOutputFlag(cmd, &output, outJSON, outYAML)
	cmd.Flags().BoolVar(&clientOnly, "client", false, "print only the client version; do not contact the control plane")
	return cmd
}
