/*
 * version: the one place the sluice version is set. Every binary prints it
 * for --version as "<program> (sluice) SLUICE_VERSION".
 */
#ifndef SLUICE_LIB_VERSION_H
#define SLUICE_LIB_VERSION_H

#define SLUICE_VERSION "0.6.0"

#endif
