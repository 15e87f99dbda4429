/*
 * layer.h - the library's layers, bottom up.  A module may include the
 * headers of its own layer and of the layers below it, never above.
 *
 *   1 format  safetensors headers, JSON, dtypes, mappings, directory scans,
 *             coverage checks; no MPI calls
 *   2 plan    the consolidation planner: arithmetic only
 *   3 io      MPI and MPI-IO calls, record exchange, fault injection
 *   4 ops     writer, reader, consolidator
 *
 * src/CMakeLists.txt builds each layer as an object library and defines
 * STS_LAYER to its number; a header of a higher layer then stops the build
 * with #error.  Code outside the library (tests, tools) sees every layer.
 * The CLI sees none: it is built with the public header only.
 */
#ifndef STS_LAYER_H
#define STS_LAYER_H

#define STS_LAYER_FORMAT 1
#define STS_LAYER_PLAN   2
#define STS_LAYER_IO     3
#define STS_LAYER_OPS    4

#ifndef STS_LAYER
#define STS_LAYER STS_LAYER_OPS
#endif

#endif
