package market

import "fmt"

// Step is something that happens to a contract. The contract lifecycle is
// an explicit state machine (drawn in docs/protocol.md): Transition is its
// one table, and every state change in the engine goes through it.
type Step string

const (
	StepDeliverForReview  Step = "deliver"               // delivery under buyer_review
	StepDeliverToArbiter  Step = "deliver_to_arbiter"    // delivery under the arbiter policy
	StepDeliverChecked    Step = "deliver_checked"       // delivery that passed an automatic check
	StepDeliverRejected   Step = "deliver_rejected"      // delivery that failed an automatic check
	StepDeliveryMissed    Step = "delivery_deadline"     // no delivery by the deadline
	StepAccept            Step = "accept"                // the buyer accepts
	StepReviewElapsed     Step = "review_window_elapsed" // the buyer stayed silent: acceptance
	StepDispute           Step = "dispute"               // the buyer rejects; an arbiter decides
	StepVerdictRelease    Step = "verdict_release"       // the arbiter releases in full or in part
	StepVerdictRefund     Step = "verdict_refund"        // the arbiter refunds
	StepReassign          Step = "reassign_arbiter"      // the arbiter missed its deadline; another takes over
	StepArbiterUnanswered Step = "arbiter_deadline"      // no arbiter answered: silence accepts
)

type transition struct {
	from ContractState
	step Step
}

var contractMachine = map[transition]ContractState{
	{ContractAwarded, StepDeliverForReview}:   ContractDelivered,
	{ContractAwarded, StepDeliverToArbiter}:   ContractInReview,
	{ContractAwarded, StepDeliverChecked}:     ContractSettled,
	{ContractAwarded, StepDeliverRejected}:    ContractRefunded,
	{ContractAwarded, StepDeliveryMissed}:     ContractRefunded,
	{ContractDelivered, StepAccept}:           ContractSettled,
	{ContractDelivered, StepReviewElapsed}:    ContractSettled,
	{ContractDelivered, StepDispute}:          ContractInReview,
	{ContractInReview, StepVerdictRelease}:    ContractSettled,
	{ContractInReview, StepVerdictRefund}:     ContractRefunded,
	{ContractInReview, StepReassign}:          ContractInReview,
	{ContractInReview, StepArbiterUnanswered}: ContractSettled,
}

// Transition returns the state a contract in state from moves to on step,
// or a Conflict error that names the current state.
func Transition(from ContractState, step Step) (ContractState, error) {
	if to, ok := contractMachine[transition{from, step}]; ok {
		return to, nil
	}
	return from, &Error{Kind: Conflict, Code: "illegal_transition",
		Message: fmt.Sprintf("contract is %s; %s is not allowed in that state", from, step)}
}

// ContractStates lists every contract state, for documentation and tests.
func ContractStates() []ContractState {
	return []ContractState{ContractAwarded, ContractDelivered, ContractInReview, ContractSettled, ContractRefunded}
}

// Steps lists every step, for documentation and tests.
func Steps() []Step {
	return []Step{StepDeliverForReview, StepDeliverToArbiter, StepDeliverChecked, StepDeliverRejected,
		StepDeliveryMissed, StepAccept, StepReviewElapsed, StepDispute, StepVerdictRelease,
		StepVerdictRefund, StepReassign, StepArbiterUnanswered}
}
