defmodule Mix.Tasks.Snakepit.Setup do
  @shortdoc "Creates the application's Python environment for Snakepit workers"
  @moduledoc """
  Creates the Python virtual environment the application's Snakepit workers
  run in, installs the library's runtime requirements (grpcio, protobuf,
  psutil) and the application's own, then checks it as
  `mix snakepit.doctor` does.

      $ mix snakepit.setup
      $ mix snakepit.setup --requirements priv/python/requirements.txt

  Safe to re-run: an existing environment is kept, and pip installs only
  what is missing or outside the allowed versions. Workers find the
  environment without configuration when it is in the default place (see
  `Snakepit.Python`); for another `--path`, set
  `config :snakepit_telemetry, python_env: "that/path"`.

  Needs a Python 3.11+ with the `venv` module (on Debian: `apt-get install
  python3-venv`) and access to a package index (pip's own settings apply:
  `PIP_INDEX_URL`, `PIP_FIND_LINKS`, proxies).

  ## Options

    * `--path DIR` - where to create it (default:
      `config :snakepit_telemetry, :python_env`, else `.venv` in the current
      folder)
    * `--python EXE` - the interpreter to create it with (default `python3`)
    * `--requirements FILE` - an application requirements file to install
      too (repeatable; default `config :snakepit_telemetry,
      :python_requirements`, a list of files)
  """
  use Mix.Task

  alias Snakepit.Python
  alias Snakepit.Python.Doctor

  @switches [path: :string, python: :string, requirements: :keep]

  @impl true
  def run(argv) do
    {opts, _rest, invalid} = OptionParser.parse(argv, strict: @switches)
    if invalid != [], do: Mix.raise("unknown option: #{inspect(invalid)}")
    Mix.Task.run("app.config")

    dir = Path.expand(opts[:path] || Python.env_dir())
    python = Path.join(dir, "bin/python")
    app_requirements = requirements(opts)
    Enum.each(app_requirements, &(File.regular?(&1) || Mix.raise("no such file: #{&1}")))

    create(dir, python, opts[:python] || "python3")
    install(python, [Python.requirements_file() | app_requirements])

    checks = Doctor.run(python: python)
    Mix.shell().info(Doctor.format(checks))
    Doctor.ok?(checks) || Mix.raise("the environment at #{dir} has problems (see above)")

    Mix.shell().info("Python environment ready: #{python}")

    if dir != Path.expand(Python.env_dir()) do
      Mix.shell().info(
        ~s(Point the workers at it: config :snakepit_telemetry, python_env: "#{dir}")
      )
    end
  end

  defp requirements(opts) do
    case Keyword.get_values(opts, :requirements) do
      [] -> Application.get_env(:snakepit_telemetry, :python_requirements, [])
      files -> files
    end
    |> Enum.map(&Path.expand/1)
  end

  defp create(dir, python, base) do
    if File.exists?(python) do
      Mix.shell().info("Using the existing environment at #{dir}")
    else
      exe = System.find_executable(base) || (File.regular?(base) && base)
      exe || Mix.raise("Python interpreter not found: #{base} (give one with --python)")
      Mix.shell().info("Creating a Python environment at #{dir} with #{exe}")

      cmd!(
        exe,
        ["-m", "venv", dir],
        "on Debian, `apt-get install python3-venv` gives the venv module"
      )
    end
  end

  defp install(python, files) do
    args = ["-m", "pip", "install", "--disable-pip-version-check"]
    args = args ++ Enum.flat_map(files, &["-r", &1])
    Mix.shell().info("Installing #{Enum.map_join(files, ", ", &Path.relative_to_cwd/1)}")
    cmd!(python, args, "check the index and proxy settings pip uses (PIP_INDEX_URL)")
  end

  defp cmd!(exe, args, hint) do
    case System.cmd(exe, args, into: IO.stream(:stdio, :line), stderr_to_stdout: true) do
      {_, 0} ->
        :ok

      {_, status} ->
        Mix.raise("`#{Enum.join([exe | args], " ")}` failed (status #{status}); #{hint}")
    end
  end
end
