// Package archtest enforces ARCHITECTURE.md's import rules. It has no code:
// its test reads the rules table from ARCHITECTURE.md (so the document and
// the check cannot disagree), lists the module's packages with go list,
// and fails on any import the rules do not allow.
package archtest
