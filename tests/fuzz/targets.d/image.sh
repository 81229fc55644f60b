# Image module fuzz targets (sourced by tests/fuzz/run.sh): registry/layout
# JSON documents and image references.
_img="image/manifest.c image/ref.c image/util.c common/error.c common/log.c"
SRC[fuzz-manifest]="$_img"
LIBS[fuzz-manifest]="-ljson-c -lcrypto"
SRC[fuzz-ref]="$_img"
LIBS[fuzz-ref]="-ljson-c -lcrypto"
