package xds

import (
	"sort"

	"github.com/sextant-mesh/sextant/discovery/translate"
)

func sortResources(rs []*translate.Resource) {
	sort.Slice(rs, func(i, j int) bool { return rs[i].Name < rs[j].Name })
}
