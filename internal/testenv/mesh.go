package testenv

// ReviewsYAML is the shared test mesh's reviews service: two endpoints
// (v1, v2) on port 9080 and a DestinationRule with both subsets.
const ReviewsYAML = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  resolution: STATIC
  ports:
  - {number: 9080, name: http, protocol: HTTP}
  endpoints:
  - {address: 10.1.0.1, labels: {version: v1}}
  - {address: 10.1.0.2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews.default.svc.cluster.local
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
`

// RatingsYAML is the shared test mesh's ratings service, on an HTTP and a
// gRPC port.
const RatingsYAML = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ratings, namespace: default}
spec:
  hosts: [ratings.default.svc.cluster.local]
  resolution: STATIC
  ports:
  - {number: 9080, name: http, protocol: HTTP}
  - {number: 9090, name: grpc, protocol: GRPC}
  endpoints:
  - {address: 10.2.0.1}
`

// StaticServiceEntry is a ServiceEntry for <name>.default.svc.cluster.local
// with one HTTP port (80) and one endpoint at ip: the usual "add a
// service" change in tests.
func StaticServiceEntry(name, ip string) string {
	return `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ` + name + `, namespace: default}
spec:
  hosts: [` + name + `.default.svc.cluster.local]
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints: [{address: ` + ip + `}]
`
}
