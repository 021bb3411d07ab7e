package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sextant-mesh/sextant/api/debug"
)

func newPushLogCommand(e *env, g *globalFlags) *cobra.Command {
	var output string
	var tail int
	cmd := &cobra.Command{
		Use:   "push-log",
		Short: "Show the control plane's recent pushes: why, what, how big, how long until ACKed",
		Long: `Show the recent pushes of the control plane, oldest first.

  TIME       when the first change of the push was seen (local time)
  TYPE       FULL (everything that changed) or EDS (endpoints only)
  REASON     what changed, e.g. config=1 or endpoint=2
  PROXIES    proxies the push was queued on
  SENT       proxies that were sent at least one resource
  RESOURCES  resources sent, over all proxies
  BYTES      bytes of resources sent, over all proxies
  NACKS      responses the proxies rejected
  ACKED IN   from the first change (debounce included) until every proxy
             answered; "pending" while some have not

-o json|yaml adds the clusters an EDS push recomputed.`,
		Example: `  sextantctl push-log
  sextantctl push-log --tail 5
  sextantctl push-log -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output, outJSON, outYAML); err != nil {
				return err
			}
			if tail < 0 {
				return &usageError{fmt.Errorf("--tail %d: want a number of pushes (1 or more), or 0 for all the server keeps", tail)}
			}
			c, err := g.client(cmd, e)
			if err != nil {
				return err
			}
			log, err := c.PushLog(cmd.Context())
			if err != nil {
				return err
			}
			if tail > 0 && len(log) > tail {
				log = log[len(log)-tail:]
			}
			w := cmd.OutOrStdout()
			if output != outTable {
				return writeStructured(w, output, nonNil(log))
			}
			return e.writePushLog(w, log)
		},
	}
	addOutputFlag(cmd, &output, outJSON, outYAML)
	cmd.Flags().IntVar(&tail, "tail", 0, "show only the last N pushes (0: all the server keeps)")
	return cmd
}

func (e *env) writePushLog(w io.Writer, log []debug.PushRecord) error {
	tw := newTable(w)
	row(tw, "ID", "TIME", "TYPE", "REASON", "PROXIES", "SENT", "RESOURCES", "BYTES", "NACKS", "ACKED IN")
	for _, r := range log {
		typ := "FULL"
		if !r.Full {
			typ = "EDS"
		}
		acked := "pending"
		if r.Converged != nil {
			acked = roundDuration(r.ConvergedIn).String()
		}
		at := r.Start.Local().Format("15:04:05.000")
		if e.stable {
			at, acked = "<masked>", "<masked>"
		}
		row(tw, strconv.FormatUint(r.ID, 10), at, typ, orDash(strings.TrimSpace(r.Reason)),
			strconv.Itoa(r.Proxies), strconv.Itoa(r.Sent), strconv.Itoa(r.Resources), strconv.Itoa(r.Bytes),
			strconv.Itoa(r.Nacks), acked)
	}
	return tw.Flush()
}

// roundDuration keeps three significant figures or so: 1.23s, 45.6ms, 789µs.
func roundDuration(d time.Duration) time.Duration {
	switch {
	case d >= 10*time.Second:
		return d.Round(100 * time.Millisecond)
	case d >= time.Second:
		return d.Round(10 * time.Millisecond)
	case d >= 10*time.Millisecond:
		return d.Round(100 * time.Microsecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}
