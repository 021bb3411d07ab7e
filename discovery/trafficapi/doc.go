// Package trafficapi serves Sextant's traffic-state REST API,
// /api/v1/traffic on the monitoring port, used by `sextantctl traffic`:
// GET reports per service how many endpoints are running or keepalive and
// the share keepalive endpoints get; POST switches the state of a service's
// endpoints by handing the change to the registry the service came from.
//
// It reads the served model through a Snapshots source (the xDS server)
// and writes only through the Setter cmd/sextant wires to the registries,
// so neither the xDS server nor the registries depend on it. A POST answers
// once the change is in the snapshot being served (or after a bounded
// wait), so a `traffic status` right after `traffic set` sees it.
package trafficapi
