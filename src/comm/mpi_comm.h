// MpiComm: the Communicator over MPI_COMM_WORLD (OpenMPI from Debian). The
// build has it when CMake finds MPI (MOERACK_HAVE_MPI); without it MpiWorld()
// returns an error that says so, and everything else still works.
// Thread-safety: MPI is initialised FUNNELED: only the thread that called
// MpiWorld may use the communicator.
#pragma once

#include <memory>

#include "comm/communicator.h"

namespace moerack {

// Whether the process was started by mpirun/mpiexec (an MPI launcher's environment).
bool LaunchedByMpi();
// Initialises MPI once and returns the world communicator; MPI_Finalize runs
// when it is destroyed. Errors: built without MPI, or MPI_Init failing.
StatusOr<std::unique_ptr<Communicator>> MpiWorld();

}  // namespace moerack
