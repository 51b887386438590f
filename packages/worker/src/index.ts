export {
  type AllReduce,
  type StepConfig,
  type StepResult,
  type TrainState,
  TrainingStep,
  localAllReduce,
} from './step.js';
