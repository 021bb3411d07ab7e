// Package jwks fetches the JSON Web Key Sets that RequestAuthentications
// name by jwksUri, so translation can inline them into jwt_authn as istiod
// does (Envoy sidecars then never fetch keys themselves). It is the only
// I/O of JWT support: it reads the served snapshot for the URIs in use and
// writes the key sets into its own model.Shard as KindJWKS configs, which
// makes a changed key set an ordinary config change and push.
package jwks
