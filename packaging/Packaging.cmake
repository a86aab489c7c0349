# packaging/Packaging.cmake: CPack, the Debian packages (included at the end of the top-level
# CMakeLists.txt, after every install rule). packaging/build-deb.sh builds them, packaging/check-deb.sh
# checks them; by hand: `cpack --config BUILD/CPackConfig.cmake -B BUILD/package` after a build.
#   loftq-studio       everything the install rules put in the default component: bin/loftq,
#                      bin/loftq-studio, the desktop entry and icon, share/loftq-studio (plans, the
#                      demo model stories260K), share/doc/loftq-studio (README and docs/). Its
#                      Depends come from dpkg-shlibdeps over those programs (Qt 6, QCustomPlot,
#                      OpenBLAS, LAPACKE, sentencepiece, xxhash, the C/C++ runtime).
#   loftq-studio-cuda  built only with the CUDA backend: lib/loftq/libloftq_cuda.so (install
#                      component `cuda`, engine/cuda/CMakeLists.txt), which the programs dlopen when
#                      a GPU is asked for. It links NVIDIA's libcudart/cuBLAS/cuSOLVER, which no
#                      Debian package provides, so it gets no dpkg-shlibdeps: it Depends on
#                      loftq-studio of the same version, and its description names the CUDA runtime
#                      it needs. Without it (or without a GPU) the programs run on the CPU.
# Packages are installed under /usr (CPACK_PACKAGING_INSTALL_PREFIX); every install rule uses a
# relative destination, so a build tree configured for /usr/local packages as well.
set(CPACK_PACKAGE_NAME loftq-studio)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_VENDOR "LoftQ Studio")
set(CPACK_PACKAGE_CONTACT "LoftQ Studio maintainers <loftq-studio@example.org>")
set(CPACK_PACKAGE_HOMEPAGE_URL "https://example.org/loftq-studio")  # placeholder
# No CPACK_PACKAGE_DESCRIPTION_SUMMARY: CPackDeb would put it above every package's description;
# the first line of each CPACK_DEBIAN_<COMPONENT>_DESCRIPTION is that package's summary.
set(CPACK_GENERATOR DEB)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)        # loftq-studio_0.1.0_amd64.deb
set(CPACK_DEBIAN_PACKAGE_SECTION science)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)

# One package per install component.
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL Unspecified)          # the install rules that name no component
if(TARGET loftq_cuda_plugin)
  list(APPEND CPACK_COMPONENTS_ALL cuda)
endif()

set(CPACK_DEBIAN_UNSPECIFIED_PACKAGE_NAME loftq-studio)
set(CPACK_DEBIAN_UNSPECIFIED_PACKAGE_SHLIBDEPS ON)   # needs dpkg-shlibdeps (dpkg-dev) and file
# openmpi-bin: mpirun for runs over several processes; openssh-client: Run on over ssh.
set(CPACK_DEBIAN_UNSPECIFIED_PACKAGE_RECOMMENDS "fonts-dejavu-core, openmpi-bin, openssh-client")
if(TARGET loftq_cuda_plugin)
  set(CPACK_DEBIAN_UNSPECIFIED_PACKAGE_SUGGESTS "loftq-studio-cuda")
endif()
string(CONCAT CPACK_DEBIAN_UNSPECIFIED_DESCRIPTION
  "LoftQ quantization workbench for LLM checkpoints\n"
  "Plan, run and export LoftQ quantization (2 to 4 bits plus a LoRA initialization) of\n"
  "LLM checkpoints (Hugging Face folders, .safetensors, llama2.c .bin).\n"
  "loftq is the command-line tool (quantize, plan, finetune, eval, export formats);\n"
  "loftq-studio the Qt desktop workbench: a per-layer plan grid, error charts, mixed\n"
  "precision and LoRA fine-tuning. Ships the demo model stories260K (MIT) and the\n"
  "documentation in /usr/share/doc/loftq-studio. Runs on the CPU (OpenBLAS); the CUDA\n"
  "backend is the package loftq-studio-cuda.")

set(CPACK_DEBIAN_CUDA_PACKAGE_NAME loftq-studio-cuda)
set(CPACK_DEBIAN_CUDA_PACKAGE_SHLIBDEPS OFF)
set(CPACK_DEBIAN_CUDA_PACKAGE_DEPENDS "loftq-studio (= ${PROJECT_VERSION})")
if(TARGET loftq_cuda_plugin)
  string(REGEX MATCH "^[0-9]+" _loftq_cuda_major "${CUDAToolkit_VERSION}")
  string(CONCAT CPACK_DEBIAN_CUDA_DESCRIPTION
    "LoftQ Studio: CUDA backend\n"
    "/usr/lib/loftq/libloftq_cuda.so, which loftq and loftq-studio open when a GPU is used\n"
    "(--device cuda, or auto with a usable GPU), for sm ${CMAKE_CUDA_ARCHITECTURES}.\n"
    "It needs an NVIDIA driver and the NVIDIA CUDA ${_loftq_cuda_major} runtime libraries\n"
    "(libcudart, libcublas, libcusolver; its RUNPATH is ${CUDAToolkit_LIBRARY_DIR}), which\n"
    "are not Debian packages and are not declared as dependencies. Without them the\n"
    "programs say why and run on the CPU.")
  unset(_loftq_cuda_major)
endif()

include(CPack)
