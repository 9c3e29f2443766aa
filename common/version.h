/*
 * The release version of every interestd binary, from the file VERSION at the
 * top of the tree (the Makefile compiles it into common/version.c only).
 */
#ifndef INTERESTD_COMMON_VERSION_H
#define INTERESTD_COMMON_VERSION_H

extern const char interestd_version[];

#endif
